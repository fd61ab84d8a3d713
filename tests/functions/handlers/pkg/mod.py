from . import helper


def handler(event, context):
    return {"module": __name__.rsplit(".", 1)[-1], "helper": helper.VALUE}
