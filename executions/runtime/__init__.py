"""The runtime: everything between the pure engine (``executions/engine``) and the database
and Celery, split by role:

* ``transition.py``  one transaction per event: lock, claim, step the engine, persist
* ``publish.py``     send work item ids to Celery after commit
* ``worker.py``      run a work item (claim, invoke the function, record the result)
* ``sweeper.py``     fire due timers, reap lost attempts, re-publish unclaimed work
* ``faults.py``      fault-injection hooks for the integration tests
"""
