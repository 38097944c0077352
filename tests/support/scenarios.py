"""Every entry command as CLI words, with the entries its subject needs first: the role
matrix and the database-privilege tests run the same scenarios."""

ENROLLED = [
    ["register", "{s}", "--site", "S1", "--consent-date", "2025-01-02"],
    ["assess-eligibility", "{s}", "--date", "2025-01-03", "--her2", "positive", "--er",
     "positive", "--prior-therapy", "none", "--distant-lesions", "2",
     "--all-lesions-curable", "yes", "--lvef", "60", "--ecog", "0"],
    ["enrol", "{s}", "--date", "2025-01-10", "--weight-kg", "60"],
]
TREATED = [*ENROLLED, ["infuse", "{s}", "--cycle", "1", "--date", "2025-01-15",
                       "--weight-kg", "60", "--dose-mg", "324"]]
OPERATED = [*TREATED, ["surgery", "{s}", "--date", "2025-02-01", "--site", "primary"]]

# command -> (what must be true of the subject first, the command itself)
SCENARIOS = {
    "register": ([], ["register", "{s}", "--site", "S1", "--consent-date", "2025-01-02"]),
    "assess-eligibility": (ENROLLED[:1], ENROLLED[1]),
    "enrol": (ENROLLED[:2], ENROLLED[2]),
    "infuse": (ENROLLED, TREATED[-1]),
    "adverse-event": (TREATED, ["adverse-event", "{s}", "--term", "Nausea", "--grade", "1",
                                "--onset", "2025-01-20"]),
    "update-adverse-event": (
        [*TREATED, ["adverse-event", "{s}", "--term", "Nausea", "--grade", "1", "--onset",
                    "2025-01-20", "--id", "AE1"]],
        ["update-adverse-event", "{s}", "AE1", "--date", "2025-01-25", "--grade", "2"]),
    "resolve-adverse-event": (
        [*TREATED, ["adverse-event", "{s}", "--term", "Nausea", "--grade", "1", "--onset",
                    "2025-01-20", "--id", "AE1"]],
        ["resolve-adverse-event", "{s}", "AE1", "--date", "2025-01-26"]),
    "lvef": (TREATED, ["lvef", "{s}", "--date", "2025-01-20", "--percent", "58"]),
    "interrupt": (TREATED, ["interrupt", "{s}", "--date", "2025-01-20", "--reason", "travel"]),
    "resume": ([*TREATED, ["interrupt", "{s}", "--date", "2025-01-20", "--reason", "travel"]],
               ["resume", "{s}", "--date", "2025-01-25", "--reason", "back"]),
    "reduce-dose": (TREATED, ["reduce-dose", "{s}", "--date", "2025-01-20", "--reason",
                              "tolerability"]),
    "discontinue": (TREATED, ["discontinue", "{s}", "--date", "2025-01-20", "--reason",
                              "patient choice"]),
    "surgery": (TREATED, OPERATED[-1]),
    "complication": (OPERATED, ["complication", "{s}", "--date", "2025-02-05",
                                "--clavien-dindo", "II"]),
    "radiotherapy": (TREATED, ["radiotherapy", "{s}", "--start", "2025-02-01", "--end",
                               "2025-02-10", "--location", "liver", "--dose-gy", "50",
                               "--fractions", "5"]),
    "complete-local-treatment": (OPERATED, ["complete-local-treatment", "{s}", "--date",
                                            "2025-02-10"]),
    "pathology": (OPERATED, ["pathology", "{s}", "--date", "2025-02-03", "--ypt", "T0",
                             "--ypn", "N0", "--viable-metastatic-tumour", "not-resected"]),
    "scan": (ENROLLED, ["scan", "{s}", "--date", "2025-01-12", "--target", "L1:liver:30"]),
    "pet": (ENROLLED, ["pet", "{s}", "--date", "2025-01-12", "--sulpeak", "7.5"]),
    "ctdna": (ENROLLED, ["ctdna", "{s}", "--date", "2025-01-12", "--result", "detected"]),
    "contact": (ENROLLED, ["contact", "{s}", "--date", "2025-02-01"]),
    "subsequent-therapy": (ENROLLED, ["subsequent-therapy", "{s}", "--date", "2025-02-01",
                                      "--therapy", "capecitabine"]),
    "death": (TREATED, ["death", "{s}", "--date", "2025-03-01"]),
    "withdraw": (TREATED, ["withdraw", "{s}", "--date", "2025-03-01", "--reason", "moved"]),
    "correct": (ENROLLED, ["correct", "{s}", "{s}#3", "--reason", "scale was off", "--set",
                           "weight_kg=61"]),
    "retract": ([*ENROLLED, ["contact", "{s}", "--date", "2025-02-01"]],
                ["retract", "{s}", "{s}#4", "--reason", "entered for the wrong subject"]),
    "import": (ENROLLED, ["import", "-"]),
}
IMPORT_INPUT = '{{"command": "contact", "subject": "{s}", "date": "2025-02-01"}}\n'


def fill(args: list[str], subject: str) -> list[str]:
    return [a.format(s=subject) for a in args]
