"""The `m22bol` command: parses what a person types, asks the ledger (entries) or the reader
(queries), and prints text or JSON with the contract's exit codes. No rule lives here.
"""
