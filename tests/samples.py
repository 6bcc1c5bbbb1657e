"""Sample inputs shared by the tests."""

# One complete, ordinary person: every feature given, all inside the training ranges.
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
