"""The public-id migration gives every existing assessment its own random id and marks outcomes
recorded before keys existed as unverified (so retraining leaves them out)."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("ml_engine", "0001_initial")]
AFTER = [("ml_engine", "0002_assessment_public_id")]


@pytest.mark.django_db(transaction=True)
def test_existing_assessments_get_unique_public_ids():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("ml_engine", "Assessment")
    row = {"interface": "rest", "features": {}, "risk": 0.5, "band": "high", "label": 1, "model_version": "v"}
    old.objects.bulk_create([old(**row, outcome=i % 2 if i < 3 else None) for i in range(5)])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("ml_engine", "Assessment")
    ids = list(new.objects.values_list("public_id", flat=True))
    assert len(ids) == 5 and len(set(ids)) == 5 and all(isinstance(i, uuid.UUID) and i.version == 4 for i in ids)
    sources = sorted(new.objects.values_list("outcome_source", flat=True))
    assert sources == ["", "", "unverified", "unverified", "unverified"]
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
