"""The protocol files shipped with the program (package data)."""
