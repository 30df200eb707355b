"""boto3's transfer manager on one file, for the S3 throughput comparison (s3_transfer bin).

Usage: s3_boto3.py URL BUCKET FILE PART_BYTES CONCURRENCY
Env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Prints one line per direction:
  boto3 upload <seconds> <peak_rss_kib>
  boto3 download <seconds> <peak_rss_kib>
with the same part size and concurrency as infermux's run, path-style addressing.
"""
import os
import resource
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def main():
    url, bucket, path, part, conc = sys.argv[1:6]
    part, conc = int(part), int(conc)
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    cfg = TransferConfig(
        multipart_threshold=16 << 20,
        multipart_chunksize=part,
        max_concurrency=conc,
        use_threads=True,
    )
    key = "boto3/" + os.path.basename(path)
    t = time.perf_counter()
    s3.upload_file(path, bucket, key, Config=cfg)
    up = time.perf_counter() - t
    print(f"boto3 upload {up:.4f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
    out = path + ".boto3"
    t = time.perf_counter()
    s3.download_file(bucket, key, out, Config=cfg)
    down = time.perf_counter() - t
    print(f"boto3 download {down:.4f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
    if os.path.getsize(out) != os.path.getsize(path):
        sys.exit("boto3: the downloaded size differs")
    os.remove(out)


if __name__ == "__main__":
    main()
