"""Object store port, its S3 adapter (aiobotocore, path-style for S3Proxy) and an in-memory fake.

`put` retries with exponential backoff and full jitter; after `attempts` failures it raises
`StoreUnavailableError` and the caller decides (the archiver pauses fetching and tries later).
Objects above the multipart threshold go up in parts; the same bytes always make the same
parts, so a rewrite keeps the same ETag.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from servicekit import metrics
from servicekit.clock import Clock

from s3_archiver.settings import ArchiverSettings, S3Settings

log = logging.getLogger(__name__)


class StoreUnavailableError(RuntimeError):
    """The store did not accept the call after every retry."""


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes) -> str:
        """Write (or overwrite) an object; returns its ETag. Raises StoreUnavailableError."""
        ...

    async def get(self, key: str) -> bytes: ...

    async def list_keys(self, prefix: str) -> dict[str, str]:
        """key → ETag for every object under prefix."""
        ...

    async def ping(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    base_s: float = 0.2
    max_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return rng.uniform(0.0, min(self.max_s, self.base_s * (2**attempt)))


class MemoryObjectStore:
    """The fake: same contract, dict storage, ETag = MD5 like S3's single-part ETag."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail = False

    async def put(self, key: str, data: bytes) -> str:
        if self.fail:
            raise StoreUnavailableError("memory store set to fail")
        self.objects[key] = bytes(data)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    async def get(self, key: str) -> bytes:
        return self.objects[key]

    async def list_keys(self, prefix: str) -> dict[str, str]:
        return {
            k: hashlib.md5(v, usedforsecurity=False).hexdigest()
            for k, v in self.objects.items()
            if k.startswith(prefix)
        }

    async def ping(self) -> None:
        if self.fail:
            raise StoreUnavailableError("memory store set to fail")


class S3ObjectStore:
    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        retry: RetryPolicy,
        clock: Clock,
        multipart_threshold: int,
        part_size: int,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.retry = retry
        self.clock = clock
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._rng = random.Random()  # jitter, not security

    async def _call(self, operation: str, fn: Any, **kwargs: Any) -> Any:
        last: Exception | None = None
        for attempt in range(self.retry.attempts):
            try:
                return await fn(**kwargs)
            except (BotoCoreError, ClientError, OSError, TimeoutError) as exc:
                last = exc
                metrics.S3_ERRORS.labels(operation).inc()
                log.warning("s3 %s failed (attempt %d): %s", operation, attempt + 1, exc)
                if attempt + 1 < self.retry.attempts:
                    await self.clock.sleep(self.retry.delay(attempt, self._rng))
        raise StoreUnavailableError(f"s3 {operation} failed {self.retry.attempts} times: {last}")

    async def put(self, key: str, data: bytes) -> str:
        if len(data) < self.multipart_threshold:
            response = await self._call(
                "put_object", self._client.put_object, Bucket=self.bucket, Key=key, Body=data
            )
            return str(response["ETag"]).strip('"')
        return await self._put_multipart(key, data)

    async def _put_multipart(self, key: str, data: bytes) -> str:
        created = await self._call(
            "create_multipart_upload",
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
        )
        upload_id = created["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, len(data), self.part_size), start=1):
                part = await self._call(
                    "upload_part",
                    self._client.upload_part,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data[start : start + self.part_size],
                )
                parts.append({"ETag": part["ETag"], "PartNumber": number})
            done = await self._call(
                "complete_multipart_upload",
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return str(done["ETag"]).strip('"')
        except StoreUnavailableError:
            with contextlib.suppress(BotoCoreError, ClientError, OSError, TimeoutError):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise

    async def get(self, key: str) -> bytes:
        response = await self._call(
            "get_object", self._client.get_object, Bucket=self.bucket, Key=key
        )
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def list_keys(self, prefix: str) -> dict[str, str]:
        return await list_etags(self._client, bucket=self.bucket, prefix=prefix)

    async def ping(self) -> None:
        await self._call("head_bucket", self._client.head_bucket, Bucket=self.bucket)


async def list_etags(client: Any, *, bucket: str, prefix: str) -> dict[str, str]:
    """key → ETag of every object under `prefix`, a page of up to 1,000 at a time.

    Pages follow `StartAfter` (the last key seen), not the continuation token: S3Proxy hands
    back a URL-encoded token for keys holding `=` or `+` (as every archive key does), then
    fails to read it, so token pagination repeats its first page past 1,000 keys.
    """
    out: dict[str, str] = {}
    start_after = ""
    while True:
        page = await client.list_objects_v2(Bucket=bucket, Prefix=prefix, StartAfter=start_after)
        contents = page.get("Contents", [])
        for item in contents:
            out[item["Key"]] = str(item["ETag"]).strip('"')
        if not page.get("IsTruncated") or not contents:
            return out
        start_after = contents[-1]["Key"]


@contextlib.asynccontextmanager
async def s3_client(s3: S3Settings, *, timeout_s: float) -> AsyncIterator[Any]:
    """An aiobotocore S3 client; path-style addressing (S3Proxy, MinIO) when an endpoint is set.

    botocore's own retries are off: `S3ObjectStore` retries with jitter and counts failures.
    """
    config = AioConfig(
        s3={"addressing_style": "path"} if s3.s3_endpoint_url else {},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=min(timeout_s, 3.0),
        read_timeout=timeout_s,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=s3.s3_endpoint_url,
        region_name=s3.aws_region,
        aws_access_key_id=s3.aws_access_key_id.get_secret_value() if s3.aws_access_key_id else None,
        aws_secret_access_key=(
            s3.aws_secret_access_key.get_secret_value() if s3.aws_secret_access_key else None
        ),
        config=config,
    ) as client:
        yield client


def make_store(
    client: Any, s3: S3Settings, settings: ArchiverSettings, clock: Clock
) -> S3ObjectStore:
    return S3ObjectStore(
        client,
        bucket=s3.s3_bucket,
        retry=RetryPolicy(
            attempts=settings.s3_attempts,
            base_s=settings.s3_backoff_base_s,
            max_s=settings.s3_backoff_max_s,
        ),
        clock=clock,
        multipart_threshold=settings.multipart_threshold_bytes,
        part_size=settings.multipart_part_bytes,
    )


async def ensure_bucket(client: Any, bucket: str) -> None:
    """Create the bucket when missing (local stacks); on AWS it already exists.

    An unreachable endpoint is not an error here: the archiver starts and waits for S3.
    """
    try:
        await client.head_bucket(Bucket=bucket)
    except ClientError:
        with contextlib.suppress(ClientError, BotoCoreError, OSError):
            await client.create_bucket(Bucket=bucket)
    except (BotoCoreError, OSError) as exc:
        log.warning("cannot reach S3 to check bucket %s: %s", bucket, exc)
