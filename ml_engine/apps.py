from django.apps import AppConfig


class MlEngineConfig(AppConfig):
    name = "ml_engine"
    verbose_name = "ML engine"
