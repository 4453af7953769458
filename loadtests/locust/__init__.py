"""The Locust scenarios: user classes, their shared support, and load shapes (`locustfile.py` gathers them).

Only Locust processes import the user classes (`import locust` patches the process with gevent); `shapes.py`
is plain data that the sweep may import too.
"""
