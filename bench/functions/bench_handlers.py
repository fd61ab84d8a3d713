"""The benchmark's function: does nothing but hand its event back.

Registered by bench/run.py as the function ``bench_echo`` (handler ``bench_handlers.echo``);
bench/functions is put on FLOWSITE_FUNCTIONS_PATH for the worker and the driver.
"""


def echo(event, context):
    # ``event`` is the JSON text (bytes) of the task's input; returning it unchanged makes the
    # envelope's Body equal to that input.
    return event
