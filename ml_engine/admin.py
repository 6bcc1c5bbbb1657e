"""The admin (staff only): model versions, the serving plan's history, assessments and their
outcome audit trail."""

from django.contrib import admin
from django.db.models import Model
from django.forms import ModelForm
from django.http import HttpRequest

from .models import Assessment, ModelActivation, ModelVersion, OutcomeChange, ServingPlan
from .services import Recorder, assessment_record_outcome


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
    def roc_auc(self, obj: ModelVersion) -> float | None:
        return obj.metrics.get("roc_auc")

    @admin.display(description="Brier")
    def brier(self, obj: ModelVersion) -> float | None:
        return obj.metrics.get("brier")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from `manage.py train`


@admin.register(ServingPlan)
class ServingPlanAdmin(admin.ModelAdmin):
    """The shadow and canary changes, newest first; read only: they are made with `manage.py shadow`,
    `canary` and `activate` (README: "Model registry")."""

    list_display = ["changed_at", "changed_by", "shadow_version", "canary_version", "canary_share", "note"]
    readonly_fields = [f.name for f in ServingPlan._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ServingPlan | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ServingPlan | None = None) -> bool:
        return False


class OutcomeChangeInline(admin.TabularInline):
    model = OutcomeChange
    extra = 0
    fields = ("changed_at", "changed_by", "source", "old_outcome", "new_outcome")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Assessment)
class AssessmentAdmin(admin.ModelAdmin):
    """Staff may set or change an outcome here; the change goes through the service, so it is
    recorded as theirs and leaves an audit row (README: "Access and roles")."""

    list_display = [
        "public_id",
        "created_at",
        "interface",
        "risk",
        "band",
        "model_version",
        "outcome",
        "outcome_source",
    ]
    list_filter = ["interface", "band", "outcome", "outcome_source", "model_version"]
    search_fields = ["=public_id"]
    readonly_fields = [
        "public_id",
        "created_at",
        "interface",
        "features",
        "risk",
        "band",
        "label",
        "model_version",
        "outcome_recorded_at",
        "outcome_source",
        "outcome_recorded_by",
    ]
    fields = [*readonly_fields[:8], "outcome", *readonly_fields[8:]]
    inlines = [OutcomeChangeInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Assessment, form: ModelForm, change: bool) -> None:
        if "outcome" not in form.changed_data or obj.outcome is None:
            return  # nothing else is editable; clearing an outcome is not offered
        assessment_record_outcome(
            public_id=obj.public_id,
            outcome=obj.outcome,
            recorder=Recorder(
                source=Assessment.OutcomeSource.STAFF, name=f"staff:{request.user.get_username()}", user=request.user
            ),
            allow_change=True,
        )


@admin.register(OutcomeChange)
class OutcomeChangeAdmin(admin.ModelAdmin):
    """The audit trail: read only."""

    list_display = ["changed_at", "assessment", "changed_by", "source", "old_outcome", "new_outcome"]
    list_filter = ["source"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutcomeChange | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutcomeChange | None = None) -> bool:
        return False
