"""A plain Lambda Python handler, run by awslambdaric (AWS's runtime interface client)."""
import os


def handler(event, context):
    print("hello from awslambdaric")  # lands in the logs
    return {
        "event": event,
        "requestId": context.aws_request_id,
        "function": context.function_name,
        "remainingMs": context.get_remaining_time_in_millis(),
        "runtime": "awslambdaric",
        "region": os.environ.get("AWS_REGION"),
    }
