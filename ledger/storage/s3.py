"""The S3 store: the same layout as every backend, under ``s3://bucket/prefix``, coordinated only by S3's own
conditional writes (spec/store.md, section 5).

- put-if-absent is ``PutObject`` (or ``CompleteMultipartUpload``) with ``If-None-Match: *``: S3 creates the object
  atomically or answers 412 PreconditionFailed. There is no lock, no lease and no other coordination.
- 409 ConditionalRequestConflict (a concurrent conditional write to the same key was in flight) is retried with
  backoff; 5xx, throttling and dropped connections are retried by botocore's standard retry mode.
- An *ambiguous* outcome -- a write that was retried after a timeout or 5xx and then answered 412 -- may have been our
  own write landing: the object is read back and compared with what we tried to write before concluding we lost.
- S3 LIST is strongly consistent and lexicographic, so the chain head is found by listing with ``StartAfter``.

Endpoint, region, credentials, retries and timeouts come from boto3's standard configuration (``AWS_ENDPOINT_URL``,
profiles, the environment); nothing here is specific to one S3 implementation. boto3 is imported only when an S3
store is opened, so local commands never pay for it.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO
from urllib.parse import urlparse

from ..errors import Corrupt, ForeignObject, LedgerError, NotFound, StorageError, UsageError
from .base import RangeReader, Store, Upload, check_key

PART_SIZE = 8 * 1024 * 1024           # multipart part size (S3 minimum is 5 MiB, except for the last part)
MAX_INFLIGHT_PARTS = 3                 # parts of one upload being sent at once (bounds memory: 3 x 8 MiB)
READ_BLOCK = 8 * 1024 * 1024           # range reads of packs fetch aligned blocks of this size ...
READ_BLOCKS_CACHED = 4                 # ... and keep a few, so items read in pack order cost one GET per block
CONFLICT_RETRIES = 8                   # 409 ConditionalRequestConflict: retried with backoff this many times
_BUCKET_RE_MAX = 63


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, "some/prefix"); the prefix is checked like any store key."""
    p = urlparse(url)
    bucket = p.netloc
    if p.scheme != "s3" or not bucket or len(bucket) > _BUCKET_RE_MAX or "/" in bucket or p.query or p.fragment:
        raise UsageError(f"store URL {url!r}: expected s3://bucket/prefix")
    prefix = p.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except StorageError:
            raise UsageError(f"store URL {url!r}: the prefix must be /-separated segments of "
                             "[A-Za-z0-9._-] (no empty, '.' or '..' segment)") from None
    return bucket, prefix


def _error_code(exc: Exception) -> tuple[str, int]:
    resp = getattr(exc, "response", None) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _missing_key(exc: Exception) -> bool:
    """A 404 about the object (a missing bucket is a different, louder error)."""
    code, status = _error_code(exc)
    return code != "NoSuchBucket" and (code in ("NoSuchKey", "404", "NotFound") or status == 404)


def _retried(exc: Exception) -> bool:
    resp = getattr(exc, "response", None) or {}
    return int(resp.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


class S3Store(Store):
    """A store under one bucket and prefix. Thread-safe: one boto3 client, shared by the upload threads."""

    remote = True

    def __init__(self, url: str, client: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self._client = client
        self._client_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.requests: Counter[str] = Counter()  # HTTP requests sent, per operation (retries included)
        self.bytes_sent = 0
        self.retention: tuple[str, int] | None = None  # (mode, days): Object Lock for immutable keys, see lock()
        self.immutable: Callable[[str], bool] = lambda key: False

    # -- plumbing ------------------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {"connect_timeout": 10, "read_timeout": 60, "max_pool_connections": 32,
                                  "tcp_keepalive": True}
        # Retries: the user's own configuration (AWS_MAX_ATTEMPTS / AWS_RETRY_MODE / a profile) wins; otherwise
        # botocore's standard mode, which retries 5xx, throttling and dropped connections with jittered backoff.
        if not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
            kwargs["retries"] = {"mode": "standard", "max_attempts": 6}
        try:
            session = boto3.session.Session()
            client = session.client("s3", config=Config(**kwargs))
        except Exception as exc:  # a broken profile or config file
            raise StorageError(f"{self.url}: cannot configure the S3 client: {exc}") from None
        client.meta.events.register("before-send.s3", self._count_request)
        return client

    def _count_request(self, request: Any = None, event_name: str = "", **kwargs: Any) -> None:
        """botocore's ``before-send.s3.<Operation>`` hook: once per HTTP attempt, retries included."""
        self.requests[event_name.rsplit(".", 1)[-1] or "?"] += 1
        body = getattr(request, "body", None)
        if isinstance(body, bytes | bytearray):
            self.bytes_sent += len(body)
        elif body is not None and hasattr(body, "seek") and hasattr(body, "tell"):
            # botocore hands PutObject bodies over as seekable streams (for its checksums), not as bytes
            try:
                pos = body.tell()
                self.bytes_sent += body.seek(0, os.SEEK_END) - pos
                body.seek(pos)
            except (OSError, ValueError):
                pass

    def _k(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, exc: Exception, what: str) -> LedgerError:
        """One error family for every failure boto3 can raise: NotFound (3) or StorageError (5), one line."""
        from botocore import exceptions as bx

        if isinstance(exc, LedgerError):
            return exc
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return StorageError(f"{self.url}: no usable AWS credentials (set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or another source boto3 reads)")
        if isinstance(exc, bx.ClientError):
            code, status = _error_code(exc)
            if code == "NoSuchBucket":
                return NotFound(f"{self.url}: no such bucket {self.bucket!r}")
            if code == "InvalidBucketName":
                return UsageError(f"{self.url}: invalid bucket name {self.bucket!r}")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return NotFound(f"{what}: no such object")
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
                        "ExpiredToken", "InvalidToken") or status == 403:
                return StorageError(f"{self.url}: {what}: access denied ({code or status}); check the credentials "
                                    "and the bucket policy")
            msg = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)
            return StorageError(f"{self.url}: {what}: S3 error {code or status}: {msg}")
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError | bx.ConnectTimeoutError
                      | bx.ReadTimeoutError | bx.ConnectionError):
            endpoint = getattr(self._client, "meta", None)
            where = endpoint.endpoint_url if endpoint is not None else "the S3 endpoint"
            return StorageError(f"{self.url}: cannot reach {where} ({type(exc).__name__})")
        if isinstance(exc, bx.BotoCoreError):
            return StorageError(f"{self.url}: {what}: {exc}")
        if isinstance(exc, OSError):
            return StorageError(f"{self.url}: {what}: {exc.strerror or exc}")
        raise exc

    def _call(self, op: str, what: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            raise self._fail(exc, what) from None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._client_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(8, thread_name_prefix="ledger-s3")
        return self._pool

    # -- Object Lock -----------------------------------------------------------------------------------------------
    def lock(self, mode: str, days: int, immutable: Callable[[str], bool]) -> None:
        """Make every later write of a key ``immutable`` says is write-once WORM for ``days`` (Object Lock)."""
        self.retention, self.immutable = (mode, days), immutable

    def _lock_args(self, key: str) -> dict[str, Any]:
        if self.retention is None or not self.immutable(key):
            return {}
        mode, days = self.retention
        until = datetime.now(UTC) + timedelta(days=days)
        return {"ObjectLockMode": mode, "ObjectLockRetainUntilDate": until}

    def object_retention(self, key: str) -> tuple[str, datetime] | None:
        """The Object Lock retention on ``key``'s current version, or None."""
        h = self._call("head_object", key, Key=self._k(key))
        mode, until = h.get("ObjectLockMode"), h.get("ObjectLockRetainUntilDate")
        if not mode or until is None:
            return None
        return str(mode), until

    def bucket_lock_enabled(self) -> bool:
        from botocore import exceptions as bx

        try:
            cfg = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except bx.ClientError as exc:
            code, _ = _error_code(exc)
            if code in ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"):
                return False
            raise self._fail(exc, "object lock configuration") from None
        except Exception as exc:
            raise self._fail(exc, "object lock configuration") from None
        return bool(cfg.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    # -- interface -----------------------------------------------------------------------------------------------
    def exists_store(self) -> bool:
        """The bucket exists (a missing bucket is reported as such, exit 3, rather than as a missing store)."""
        from botocore import exceptions as bx

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bx.ClientError as exc:
            code, status = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound") or status == 404:
                raise NotFound(f"{self.url}: no such bucket {self.bucket!r} (create it first; ledger never "
                               "creates buckets)") from None
            raise self._fail(exc, "bucket") from None
        except Exception as exc:
            raise self._fail(exc, "bucket") from None
        return True

    def create(self) -> None:
        """A ledger never creates buckets (their policy, region, versioning and lock are the owner's choice)."""
        self.exists_store()

    def get(self, key: str) -> bytes:
        resp = self._call("get_object", key, Key=self._k(key))
        try:
            data: bytes = resp["Body"].read()
        except Exception as exc:
            raise self._fail(exc, key) from None
        return data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise Corrupt(f"{key}: invalid range {offset}+{length}")
        if length == 0:
            if self.size(key) is None:
                raise NotFound(f"{key}: no such object")
            return b""
        from botocore import exceptions as bx

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._k(key),
                                          Range=f"bytes={offset}-{offset + length - 1}")
            data: bytes = resp["Body"].read()
        except bx.ClientError as exc:
            code, status = _error_code(exc)
            if code == "InvalidRange" or status == 416:
                raise Corrupt(f"{key}: object is truncated (wanted bytes {offset}..{offset + length}, "
                              "object is shorter)") from None
            raise self._fail(exc, key) from None
        except Exception as exc:
            raise self._fail(exc, key) from None
        if len(data) != length:
            raise Corrupt(f"{key}: object is truncated (wanted bytes {offset}..{offset + length}, got {len(data)})")
        return data

    def open_read(self, key: str) -> BinaryIO:
        resp = self._call("get_object", key, Key=self._k(key))
        return io.BufferedReader(_BodyReader(self, key, resp["Body"]), buffer_size=1024 * 1024)

    def size(self, key: str) -> int | None:
        from botocore import exceptions as bx

        try:
            h = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except bx.ClientError as exc:
            if _missing_key(exc):
                return None
            raise self._fail(exc, key) from None
        except Exception as exc:
            raise self._fail(exc, key) from None
        return int(h["ContentLength"])

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._conditional(key, data, lambda: self.client.put_object(
            Bucket=self.bucket, Key=self._k(key), Body=data, IfNoneMatch="*", **self._lock_args(key)))

    def _conditional(self, key: str, expected: bytes | None, attempt: Callable[[], Any]) -> bool:
        """Run a conditional write (If-None-Match or If-Match) until it has a definite outcome.

        True: the object now holds what we wrote. False: the condition failed (412; or 404 for If-Match on a key
        deleted meanwhile). A 412 after an uncertain attempt (botocore retried a timeout or 5xx, or we retried a
        409) may be our own write that landed: then the stored bytes decide (``expected``), never the bare 412.
        """
        from botocore import exceptions as bx

        uncertain = False
        for n in range(CONFLICT_RETRIES + 1):
            try:
                attempt()
                return True
            except bx.ClientError as exc:
                code, status = _error_code(exc)
                uncertain = uncertain or _retried(exc)
                if status == 412 or code == "PreconditionFailed":
                    if not uncertain or expected is None:
                        return False
                    return self._holds(key, expected)
                if _missing_key(exc):
                    return False
                if status == 409 and code in ("ConditionalRequestConflict", "OperationAborted", ""):
                    uncertain = True
                    time.sleep(min(2.0, 0.05 * 2 ** n) * random.random())  # noqa: S311 - jitter, not secrecy
                    continue
                if status >= 500:
                    return self._landed_or_raise(exc, key, expected)
                raise self._fail(exc, key) from None
            except Exception as exc:
                return self._landed_or_raise(exc, key, expected)
        raise StorageError(f"{self.url}: {key}: still conflicting after {CONFLICT_RETRIES} retries (409)")

    def _landed_or_raise(self, exc: Exception, key: str, expected: bytes | None) -> bool:
        """botocore gave up on a transient failure (5xx or transport): the write may or may not have landed. Look,
        and report the failure only when our bytes are not there."""
        err = self._fail(exc, key)
        if isinstance(err, StorageError) and expected is not None:
            try:
                if self._holds(key, expected):
                    return True
            except LedgerError:
                pass
        raise err from None

    def _holds(self, key: str, expected: bytes) -> bool:
        try:
            return self.get(key) == expected
        except NotFound:
            return False

    def compare_and_swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        """If-None-Match for absent, else If-Match on the ETag of the bytes we compared. ETags of equal bodies are
        equal (ABA), so callers must put a sequence number or nonce in any body they swap; ledger/1 swaps none."""
        from botocore import exceptions as bx

        if expected is None:
            return self.put_if_absent(key, data)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
            current = resp["Body"].read()
            etag = resp["ETag"]
        except bx.ClientError as exc:
            if _missing_key(exc):
                return False
            raise self._fail(exc, key) from None
        except Exception as exc:
            raise self._fail(exc, key) from None
        if current != expected:
            return False
        return self._conditional(key, data, lambda: self.client.put_object(
            Bucket=self.bucket, Key=self._k(key), Body=data, IfMatch=etag, **self._lock_args(key)))

    def delete(self, key: str) -> None:
        self._call("delete_object", key, Key=self._k(key))

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        full = self._k(prefix.rstrip("/")) + ("/" if prefix.endswith("/") else "") if prefix else (
            f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        kwargs: dict[str, Any] = {"Prefix": full}
        if start_after is not None:
            kwargs["StartAfter"] = self._k(start_after)
        return self._list(kwargs, strip)

    def _list(self, kwargs: dict[str, Any], strip: int) -> Iterator[str]:
        token: str | None = None
        while True:
            page = self._call("list_objects_v2", "list " + kwargs["Prefix"],
                              **kwargs, **({"ContinuationToken": token} if token else {}))
            for obj in page.get("Contents", ()):
                key = obj["Key"][strip:]
                try:
                    check_key(key)
                except StorageError:
                    raise ForeignObject(f"{self.url}: object {obj['Key']!r} under the store's prefix is not a "
                                        "ledger key (is the prefix shared with something else?)", key) from None
                yield key
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def upload(self, key: str | None = None) -> Upload:
        return _S3Upload(self, key)

    def range_reader(self, key: str) -> RangeReader:
        return _BlockReader(self, key)


class _BodyReader(io.RawIOBase):
    """A raw stream over a GET body; transport failures become StorageError, an early end becomes Corrupt."""

    def __init__(self, store: S3Store, key: str, body: Any) -> None:
        self.store, self.key, self.body = store, key, body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            data = self.body.read(len(b))
        except Exception as exc:
            from botocore import exceptions as bx

            if isinstance(exc, bx.IncompleteReadError):
                raise Corrupt(f"{self.key}: object is truncated ({exc})") from None
            raise self.store._fail(exc, self.key) from None
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        try:
            self.body.close()
        finally:
            super().close()


class _BlockReader(RangeReader):
    """Range reads served from a few cached, aligned blocks: reading a pack's items in order costs one GET per
    ``READ_BLOCK`` bytes instead of one per item; reads of a block or more go straight through."""

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__(store, key)
        self._size: int | None = None
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    def _object_size(self) -> int:
        if self._size is None:
            size = self.store.size(self.key)
            if size is None:
                raise NotFound(f"{self.key}: no such object")
            self._size = size
        return self._size

    def _block(self, i: int) -> bytes:
        data = self._blocks.get(i)
        if data is not None:
            self._blocks.move_to_end(i)
            return data
        start = i * READ_BLOCK
        length = min(READ_BLOCK, self._object_size() - start)
        if length <= 0:
            return b""
        data = self.store.get_range(self.key, start, length)
        self._blocks[i] = data
        while len(self._blocks) > READ_BLOCKS_CACHED:
            self._blocks.popitem(last=False)
        return data

    def read_at(self, offset: int, length: int) -> bytes:
        if length >= READ_BLOCK:
            return self.store.get_range(self.key, offset, length)
        if offset < 0 or length < 0:
            raise Corrupt(f"{self.key}: invalid range {offset}+{length}")
        end = offset + length
        if end > self._object_size():
            raise Corrupt(f"{self.key}: object is truncated (wanted bytes {offset}..{end}, "
                          f"object has {self._object_size()})")
        out = bytearray()
        pos = offset
        while pos < end:
            i = pos // READ_BLOCK
            block = self._block(i)
            lo = pos - i * READ_BLOCK
            take = block[lo:lo + (end - pos)]
            if not take:
                raise Corrupt(f"{self.key}: object is truncated (wanted bytes {offset}..{end})")
            out += take
            pos += len(take)
        return bytes(out)

    def close(self) -> None:
        self._blocks.clear()


class _S3Upload(Upload):
    """A streaming write. When the key is known up front, parts go out while the caller is still writing
    (multipart, ``MAX_INFLIGHT_PARTS`` at once); otherwise the bytes are spooled (memory, then a temporary file) and
    sent at commit. Either way nothing is visible until the conditional PUT or CompleteMultipartUpload succeeds."""

    def __init__(self, store: S3Store, key: str | None) -> None:
        self.store = store
        self.key = key
        self._buf = bytearray()
        self._spool: IO[bytes] | None = None
        self._size = 0
        self._mpu: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._done = False

    # streaming to a known key -----------------------------------------------------------------------------------
    def write(self, data: bytes | memoryview) -> None:
        if self._done:
            raise StorageError(f"{self.store.url}: write after the upload finished")
        self._size += len(data)
        if self.key is None:
            if self._spool is None:
                self._spool = tempfile.SpooledTemporaryFile(max_size=PART_SIZE)  # noqa: SIM115 - closed in abort
            self._spool.write(data)
            return
        self._buf += data
        while len(self._buf) >= 2 * PART_SIZE:  # keep at least one part back: the last part may be small
            self._send_part(bytes(self._buf[:PART_SIZE]))
            del self._buf[:PART_SIZE]

    def _start(self, key: str) -> None:
        resp = self.store._call("create_multipart_upload", key, Key=self.store._k(key),
                                **self.store._lock_args(key))
        self._mpu = resp["UploadId"]

    def _send_part(self, data: bytes) -> None:
        assert self.key is not None
        if self._mpu is None:
            self._start(self.key)
        number = len(self._parts) + 1
        while sum(1 for f in self._parts if not f.done()) >= MAX_INFLIGHT_PARTS:
            next(f for f in self._parts if not f.done()).result()
        self._parts.append(self.store.pool.submit(self._put_part, number, data))

    def _put_part(self, number: int, data: bytes) -> dict[str, Any]:
        resp = self.store._call("upload_part", f"{self.key} part {number}", Key=self.store._k(self.key or ""),
                                UploadId=self._mpu, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def commit_if_absent(self, key: str) -> bool:
        try:
            if self.key is None:
                return self._commit_spooled(key)
            if key != self.key:
                raise StorageError(f"{self.store.url}: upload begun for {self.key} committed as {key}")
            if self._mpu is None:
                return self.store.put_if_absent(key, bytes(self._buf))
            if self._buf:
                self._send_part(bytes(self._buf))
                self._buf = bytearray()
            return self._complete(key)
        finally:
            self.abort()

    def _complete(self, key: str) -> bool:
        parts = [f.result() for f in self._parts]
        mpu = self._mpu
        won = self.store._conditional(key, None, lambda: self.store.client.complete_multipart_upload(
            Bucket=self.store.bucket, Key=self.store._k(key), UploadId=mpu, IfNoneMatch="*",
            MultipartUpload={"Parts": parts}))
        if won:
            self._mpu = None  # completed: nothing to abort
        return won

    def _commit_spooled(self, key: str) -> bool:
        spool = self._spool
        if spool is None or self._size < PART_SIZE:
            data = b""
            if spool is not None:
                spool.seek(0)
                data = spool.read()
            return self.store.put_if_absent(key, data)
        self.key = key
        spool.seek(0)
        while part := spool.read(PART_SIZE):
            self._send_part(part)
        return self._complete(key)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        for f in self._parts:
            f.cancel()
        if self._mpu is not None:
            for f in self._parts:
                if not f.cancelled():
                    with contextlib.suppress(LedgerError):
                        f.result()
            # best effort: an unfinished upload is invisible, and a bucket lifecycle rule can expire it
            with contextlib.suppress(Exception):
                self.store.client.abort_multipart_upload(Bucket=self.store.bucket,
                                                         Key=self.store._k(self.key or ""), UploadId=self._mpu)
            self._mpu = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._buf = bytearray()
