"""The one write path (`app.TrialLedger`): who may act, load the aggregate, decide, save; and
the record's integrity: the event store, access control, hash chains, seals, signatures and
exports. Imports only from `domain`; knows nothing of read models or the command line.
"""
