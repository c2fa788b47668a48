#!/usr/bin/env python3
"""Upload a file:// Nix binary cache tree to an S3 bucket (tests: moto).

usage: s3-upload-cache.py BUCKET DIR [--prefix P] [--endpoint URL] [--no-public-read]

* endpoint: --endpoint or $NARWARD_TEST_S3_ENDPOINT (required); path-style
  addressing; credentials from the usual AWS_* variables (default test/test,
  region us-east-1).
* creates BUCKET if it does not exist;
* uploads every regular file under DIR as key PREFIX + relative path, with the
  Content-Type Nix itself uses (text/x-nix-narinfo, application/x-nix-nar,
  text/x-nix-cache-info);
* unless --no-public-read, sets a bucket policy allowing anonymous
  s3:GetObject and s3:HeadObject on BUCKET/*, so a Nix client can use
  http://ENDPOINT/BUCKET as a binary cache (moto checks HEAD against
  s3:HeadObject).

Prints the binary cache URL (http://ENDPOINT/BUCKET[/PREFIX]) on stdout.
"""

import argparse
import json
import os
import sys

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover
    sys.exit("s3-upload-cache: boto3 is missing (run scripts/install-test-deps.sh)")


def content_type(key: str) -> str:
    if key.endswith(".narinfo"):
        return "text/x-nix-narinfo"
    if key.endswith("nix-cache-info"):
        return "text/x-nix-cache-info"
    if "/nar/" in "/" + key or key.endswith((".nar", ".nar.xz", ".nar.zst", ".nar.bz2")):
        return "application/x-nix-nar"
    if key.endswith(".ls"):
        return "application/json"
    return "application/octet-stream"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bucket")
    ap.add_argument("dir")
    ap.add_argument("--prefix", default="", help="key prefix, e.g. 'cache/'")
    ap.add_argument("--endpoint", default=os.environ.get("NARWARD_TEST_S3_ENDPOINT"))
    ap.add_argument("--no-public-read", action="store_true")
    args = ap.parse_args()

    if not args.endpoint:
        sys.exit("s3-upload-cache: no endpoint: pass --endpoint or set NARWARD_TEST_S3_ENDPOINT")
    if not os.path.isdir(args.dir):
        sys.exit(f"s3-upload-cache: not a directory: {args.dir}")
    prefix = args.prefix
    if prefix and not prefix.endswith("/"):
        prefix += "/"

    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(s3={"addressing_style": "path"}),
    )

    try:
        s3.head_bucket(Bucket=args.bucket)
    except ClientError:
        s3.create_bucket(Bucket=args.bucket)

    count = 0
    total = 0
    root = os.path.abspath(args.dir)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path):
                continue
            key = prefix + os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, "rb") as f:
                body = f.read()
            s3.put_object(Bucket=args.bucket, Key=key, Body=body, ContentType=content_type(key))
            count += 1
            total += len(body)

    if not args.no_public_read:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "NixAnonymousRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:HeadObject"],
                    "Resource": [f"arn:aws:s3:::{args.bucket}/*"],
                }
            ],
        }
        s3.put_bucket_policy(Bucket=args.bucket, Policy=json.dumps(policy))

    print(f"s3-upload-cache: uploaded {count} objects ({total} bytes) to s3://{args.bucket}/{prefix}",
          file=sys.stderr)
    print(f"{args.endpoint.rstrip('/')}/{args.bucket}" + (f"/{prefix.rstrip('/')}" if prefix else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
