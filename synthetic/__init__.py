"""A synthetic M22BOL trial for demonstrations and benchmarks: the commands a site would enter.

It sits above the domain, whose rules it asks (in memory) what each step of a subject's course
means; it writes nothing itself, and `m22bol demo` feeds what it generates through the one
write path, where the protocol's rules judge every command again.
"""
