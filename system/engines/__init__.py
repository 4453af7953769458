"""The queue engines behind the queued API: RQ (one job per worker process) and SAQ (asyncio, many jobs in
flight per worker process). `QUEUE_ENGINE=rq|saq` picks one (system/settings.py); the API keeps one code path
for validation, errors, admission, durability, long-poll and job status (system/api.py) and asks the engine
only for what differs (system/engines/protocol.py). Each engine's module is imported only when it is chosen.
"""
