"""The trial's rules as pure code: commands, events, the Patient and Trial aggregates, the rule
engines (`rules/`) and the protocol file (`protocols/`). Nothing here does I/O or imports from
the layers above (ledger, projections, synthetic, cli).
"""
