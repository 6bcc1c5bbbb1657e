from django.contrib import admin

from .models import Assessment, ModelActivation, ModelVersion


class ModelActivationInline(admin.TabularInline):
    model = ModelActivation
    extra = 0
    readonly_fields = ["activated_at"]
    can_delete = False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "algorithm", "created_at", "is_active", "activated_at", "roc_auc", "brier"]
    list_filter = ["is_active", "algorithm"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    inlines = [ModelActivationInline]

    @admin.display(description="ROC AUC")
    def roc_auc(self, obj):
        return obj.metrics.get("roc_auc")

    @admin.display(description="Brier")
    def brier(self, obj):
        return obj.metrics.get("brier")

    def has_add_permission(self, request):
        return False  # versions come from `manage.py train`


@admin.register(Assessment)
class AssessmentAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "interface", "risk", "band", "model_version", "outcome"]
    list_filter = ["interface", "band", "outcome", "model_version"]
    readonly_fields = ["created_at", "interface", "features", "risk", "band", "label", "model_version"]
    fields = [*readonly_fields, "outcome", "outcome_recorded_at"]

    def has_add_permission(self, request):
        return False
