"""Fixtures for the model tests: the study's own people stored as assessments with outcomes."""

import pytest

from ml_engine.models import Assessment, Interface
from ml_engine.schema import FEATURES
from ml_engine.training import load_dataset


@pytest.fixture
def store_study_people(db):
    """``store_study_people(rows, source="api_key", flipped=False, recorded_by="")``: the study's
    (the CSV's) people at ``rows`` stored as REST assessments with their real outcome (the
    opposite one with ``flipped``) recorded by ``source`` (None: no outcome recorded)."""

    def store(rows: range, *, source: str | None = "api_key", flipped: bool = False, recorded_by: str = "") -> None:
        data = load_dataset()
        Assessment.objects.bulk_create(
            Assessment(
                interface=Interface.REST,
                features={f.key: None if x != x else float(x) for f, x in zip(FEATURES, data.X[i], strict=True)},
                risk=0.5,
                band="high",
                label=1,
                model_version="v",
                outcome=None if source is None else int(1 - data.y[i] if flipped else data.y[i]),
                outcome_source=source or "",
                outcome_recorded_by=recorded_by,
            )
            for i in rows
        )

    return store
