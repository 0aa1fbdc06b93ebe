"""S3 adapter of the `ObjectStore` port."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lakelog.errors import UnavailableError
from lakelog.storage.errors import translate_client_errors
from lakelog.storage.ports import ObjectInfo
from lakelog.storage.rules import missing_object, short_read

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3ObjectStore"]

_DELETE_BATCH = 1000


class S3ObjectStore:
    """Objects in one bucket, through an injected boto3 S3 client."""

    def __init__(self, s3_client: S3Client, bucket: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket

    @translate_client_errors
    def put(self, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body)

    @translate_client_errors
    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            response = self._s3.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "InvalidRange"):
                raise missing_object(key, code) from None
            raise
        data = response["Body"].read()
        if len(data) != end - start:
            raise short_read(key, start, end, len(data))
        return data

    @translate_client_errors
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=obj["Key"],
                    size=obj["Size"],
                    last_modified_ms=int(obj["LastModified"].timestamp() * 1000),
                )

    @translate_client_errors
    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            chunk = keys[start : start + _DELETE_BATCH]
            response = self._s3.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
            )
            # A 200 that lists keys it kept (access denied, slow down): not deleted.
            if kept := response.get("Errors", []):
                first = kept[0]
                raise UnavailableError(
                    f"S3 kept {len(kept)} of {len(chunk)} objects, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )
