"""Pure rule engines (eligibility, treatment, safety, RECIST, assessments, endpoints, survival),
each a set of functions over plain values."""
