"""The assessment form, generated from the feature schema."""

from django import forms

from .schema import FEATURES, value_error


class FeatureForm(forms.Form):
    """One optional number input per feature; an empty field is imputed by the model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for feature in FEATURES:
            self.fields[feature.key] = forms.FloatField(
                required=False,
                label=feature.label,
                help_text=feature.description,
                error_messages={"invalid": f"{feature.label} must be a number from {feature.range_text}."},
                widget=forms.NumberInput(
                    attrs={
                        "min": _attr(feature.min),
                        "max": _attr(feature.max),
                        "step": _attr(feature.step),
                        "inputmode": "numeric" if feature.integer else "decimal",
                        "autocomplete": "off",
                        "data-feature": feature.key,
                    }
                ),
            )
            self.fields[feature.key].unit = feature.unit
            self.fields[feature.key].range_text = feature.range_text

    def clean(self):
        cleaned = super().clean()
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
