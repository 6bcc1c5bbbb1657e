from django.urls import path

from . import views

app_name = "live"

urlpatterns = [
    path("", views.assessment_form, name="form"),
    path("predict/", views.assessment_result, name="predict"),
    path("model/", views.model_card, name="model_card"),
    path("monitor/", views.monitor, name="monitor"),
    path("kiosk/", views.kiosk, name="kiosk"),
    path("kiosk/<str:board>/", views.kiosk, name="kiosk_board"),
]
