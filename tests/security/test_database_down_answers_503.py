"""With the database gone, REST answers 503 with Retry-After in its error shape (not a 500), V2
keeps serving from the loaded model, and the model watcher logs the failure once, not twice a
second, then says when it works again."""

import shutil
import time

import requests

from tests.samples import PERSON
from tests.servers import wait_until

DEADLINE = 60.0


def test_rest_answers_503_and_the_watcher_logs_once(fresh_daphne, server_env):
    daphne = fresh_daphne  # on server_env's database, which the test takes away
    predict = f"{daphne.http}/api/v1/predict"
    assert requests.post(predict, json={"features": PERSON}, timeout=30).status_code == 200
    db = server_env.base / "db.sqlite3"
    saved = server_env.base / "db.saved"
    shutil.move(db, saved)
    db.mkdir()  # a directory where the database file was: every connection fails to open it
    try:
        response = requests.post(predict, json={"features": PERSON}, timeout=30)
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert response.json() == {"errors": {"non_field_errors": ["The database is unavailable; try again shortly."]}}
        failed = "Checking the active model version failed"
        wait_until(
            lambda: failed in daphne.log(), "timed out waiting for the watcher's first failure", timeout=DEADLINE
        )
        first = daphne.log().count("Traceback")
        # Several watcher intervals (0.5 s) pass while requests keep failing.
        for _ in range(10):
            assert requests.post(predict, json={"features": PERSON}, timeout=30).status_code == 503
            time.sleep(0.3)
        log = daphne.log()
        assert log.count(failed) == 1
        assert log.count("Traceback") == first
    finally:
        db.rmdir()
        shutil.move(saved, db)
    wait_until(lambda: "works again" in daphne.log(), "the watcher never said it works again", timeout=DEADLINE)
    assert requests.post(predict, json={"features": PERSON}, timeout=30).status_code == 200
