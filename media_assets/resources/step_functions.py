"""AWS Step Functions callback client: answer a task token when a run ends."""

import json

import boto3
import dagster as dg
from pydantic import PrivateAttr

MAX_OUTPUT_BYTES = 256 * 1024  # SendTaskSuccess output limit (UTF-8 bytes)
MAX_ERROR_CHARS = 256  # SendTaskFailure error limit
MAX_CAUSE_CHARS = 32_768  # SendTaskFailure cause limit


def bounded_output(output: dict, list_key: str) -> str:
    """``output`` as JSON within 256 KB: if it is larger, ``output[list_key]`` is shortened and
    ``<list_key>_truncated``/``<list_key>_total`` say so."""
    text = json.dumps(output)
    if len(text.encode()) <= MAX_OUTPUT_BYTES:
        return text
    items = list(output.get(list_key, []))
    lo, hi = 0, len(items)
    while lo < hi:  # longest prefix that fits
        mid = (lo + hi + 1) // 2
        trial = {**output, list_key: items[:mid], f"{list_key}_truncated": True, f"{list_key}_total": len(items)}
        if len(json.dumps(trial).encode()) <= MAX_OUTPUT_BYTES:
            lo = mid
        else:
            hi = mid - 1
    return json.dumps({**output, list_key: items[:lo], f"{list_key}_truncated": True, f"{list_key}_total": len(items)})


class StepFunctionsResource(dg.ConfigurableResource):
    """``SendTaskSuccess``/``SendTaskFailure`` for runs launched by a Step Functions task with
    a task token (run tag ``media_assets/task_token``)."""

    region_name: str | None = None
    endpoint_url: str | None = None

    _client = PrivateAttr(default=None)

    def client(self):
        if self._client is None:
            self._client = boto3.client("stepfunctions", region_name=self.region_name, endpoint_url=self.endpoint_url)
        return self._client

    def send_success(self, task_token: str, output: dict, list_key: str = "selected_frame_keys") -> None:
        self.client().send_task_success(taskToken=task_token, output=bounded_output(output, list_key))

    def send_failure(self, task_token: str, error: str, cause: str) -> None:
        self.client().send_task_failure(taskToken=task_token, error=error[:MAX_ERROR_CHARS], cause=cause[:MAX_CAUSE_CHARS])
