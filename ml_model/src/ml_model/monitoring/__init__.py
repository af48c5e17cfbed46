"""Monitoring of served model versions: the reference profile a trainer logs with each version
(``reference``) and the drift of served traffic against it (``drift``)."""
