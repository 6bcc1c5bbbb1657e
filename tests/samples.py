"""Sample inputs shared by the tests, and the one bound on how long a test waits for an answer.

The only home of test data used by more than one test module: a test that needs a person takes
one from here instead of writing its own.
"""

# One complete, ordinary person: every feature given, all inside the training ranges, in the
# contract's feature order.
PERSON = {
    "pregnancies": 2,
    "glucose": 148,
    "blood_pressure": 72,
    "skin_thickness": 35,
    "insulin": 120,
    "bmi": 33.6,
    "diabetes_pedigree": 0.627,
    "age": 50,
}

# The same person with only the three values most people know: the rest is imputed.
PARTIAL_PERSON = {key: PERSON[key] for key in ("glucose", "bmi", "age")}

# PERSON as one row of a V2 tensor (FP64, the contract's feature order).
PERSON_ROW = [float(value) for value in PERSON.values()]

# Seconds a test waits for something that normally takes milliseconds: an upper bound for a
# shared, busy machine, never a measurement (tests check behaviour, not time).
TIMEOUT = 30
