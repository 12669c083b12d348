"""The function for the `provided.al2023` example: echoes the event back, strings upper-cased."""


def shout(value):
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [shout(v) for v in value]
    if isinstance(value, dict):
        return {k: shout(v) for k, v in value.items()}
    return value


def handler(event, context):
    print(f"got an event of type {type(event).__name__}")  # lands in the logs
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError(f"asked to fail: {event['fail']}")
    return {"echo": shout(event), "requestId": context.aws_request_id}
