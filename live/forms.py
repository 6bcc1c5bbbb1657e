"""The assessment form of the person's page, generated from the feature schema.

It only translates what a person types into the schema's values (mg/dL, a decimal point); the
schema and the prediction service decide what is acceptable. README: "The person's pages".
"""

from __future__ import annotations

import re
from typing import Any

from django import forms

from ml_engine.schema import FEATURES, Feature, value_error

# 1 mmol/L of glucose is 18.016 mg/dL (molar mass of glucose 180.16 g/mol).
MG_DL_PER_MMOL_L = 18.016
GLUCOSE_UNITS = (("mg/dL", "mg/dL"), ("mmol/L", "mmol/L"))

# "33,6" is a decimal comma; "1,000" (three digits after the comma) could be either, so it is refused.
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+,\d+\s*$")
_AMBIGUOUS_COMMA = re.compile(r"^\s*[+-]?\d{1,3},\d{3}\s*$")


def read_number(text: str) -> str:
    """Text with a decimal comma read as a decimal point; raises ValidationError when unclear."""
    if "," not in text:
        return text
    if _AMBIGUOUS_COMMA.match(text):
        raise forms.ValidationError(
            "Is %(value)s a thousand-separated number or a decimal? Type it without the comma, "
            "or with a point for decimals.",
            code="ambiguous_comma",
            params={"value": text.strip()},
        )
    if _DECIMAL_COMMA.match(text):
        return text.replace(",", ".")
    raise forms.ValidationError("Use digits and at most one decimal point or comma.", code="invalid")


class MeasurementField(forms.FloatField):
    """A number as a person types it: a decimal comma counts as a decimal point.

    It carries what the page writes beside the input (unit, range, the help text's id) from the
    feature's schema entry.
    """

    def __init__(self, *, feature: Feature, help_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit = feature.unit
        self.range_text = feature.range_text
        self.lab_only = feature.lab_only
        self.help_id = help_id
        self.mmol_range_text: str | None = None
        if feature.key == "glucose":
            low, high = feature.min / MG_DL_PER_MMOL_L, feature.max / MG_DL_PER_MMOL_L
            self.mmol_range_text = f"{low:.1f} to {high:.1f} mmol/L"

    # django-stubs gives FloatField.to_python IntegerField's int | None; Django returns a float.
    def to_python(self, value: Any) -> float | None:  # type: ignore[override]
        if isinstance(value, str):
            value = read_number(value)
        return super().to_python(value)


class FeatureForm(forms.Form):
    """One optional number input per feature; an empty field is imputed by the model.

    Inputs are ``type="text"`` with a numeric keyboard (``inputmode``): a number input would hide
    what was typed ("33,6") from both the page and the server.
    """

    glucose_unit = forms.ChoiceField(
        choices=GLUCOSE_UNITS, initial="mg/dL", required=False, label="Glucose unit", widget=forms.Select
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for feature in FEATURES:
            help_id = f"id_{feature.key}_helptext"
            self.fields[feature.key] = MeasurementField(
                feature=feature,
                help_id=help_id,
                required=False,
                label=feature.label,
                help_text=feature.description,
                error_messages={"invalid": f"{feature.label} must be a number from {feature.range_text}."},
                widget=forms.TextInput(
                    attrs={
                        "inputmode": "numeric" if feature.integer else "decimal",
                        "autocomplete": "off",
                        "spellcheck": "false",
                        "data-feature": feature.key,
                        "data-min": _attr(feature.min),
                        "data-max": _attr(feature.max),
                        "data-integer": "true" if feature.integer else "false",
                        "aria-describedby": help_id,
                    }
                ),
            )
        self.order_fields([f.key for f in FEATURES])
        self.fields["glucose_unit"].widget.attrs.update(
            {"data-glucose-unit": "", "aria-describedby": "id_glucose_helptext"}
        )

    def full_clean(self) -> None:
        super().full_clean()
        # Each error is linked to its input, so a screen reader reads it with the field.
        for name in self.errors:
            field = self.fields.get(name)
            if isinstance(field, MeasurementField):
                attrs = field.widget.attrs
                attrs["aria-describedby"] = f"{field.help_id} id_{name}_error"
                attrs["aria-invalid"] = "true"

    def feature_fields(self) -> list[forms.BoundField]:
        """The bound feature fields, in schema order (the unit choice is drawn beside glucose)."""
        return [self[feature.key] for feature in FEATURES]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("glucose_unit") == "mmol/L" and cleaned.get("glucose") is not None:
            cleaned["glucose"] = round(cleaned["glucose"] * MG_DL_PER_MMOL_L, 1)
        for feature in FEATURES:
            value = cleaned.get(feature.key)
            if value is not None and (problem := value_error(feature, value)):
                self.add_error(feature.key, problem)
        if not self.errors and all(cleaned.get(f.key) is None for f in FEATURES):
            raise forms.ValidationError("Fill in at least one measurement; empty ones are estimated.")
        return cleaned

    def features(self) -> dict[str, float | None]:
        return {feature.key: self.cleaned_data.get(feature.key) for feature in FEATURES}


def _attr(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
