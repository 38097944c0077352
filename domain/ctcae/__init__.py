"""CTCAE v5.0 term list (NCI/CTEP), shipped as package data; see PROVENANCE.md."""
