"""Twin runs: surveys (surveys, answering) and interviews (interviews) over many twins, run by one
executor (executor) into one SQLite store per run (store), then analysed (analysis) and exported (exports);
who answers (selections) and runs that go on in the background (runs).

Every public function takes the `Caller` first: a run belongs to its creator, and only they or an
admin may read, export, validate, cancel or delete it (admins see every run); files the caller
names stay in their upload folder or the shipped data unless the caller is the terminal operator.
"""
