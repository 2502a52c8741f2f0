#!/usr/bin/env python3
"""The reference client: what a competent office sysadmin would write in an afternoon.

It lists the inbox once, and for each file (a ThreadPoolExecutor with its default worker
count) reads it, base64-encodes it, POSTs the submit body of the Beorg API
(`/api/bescan/add_document`: project_id, token, machine_uid, images, process_info), polls
`/api/document/result/{document_id}?token=...` every 0.5 s until the answer is not 425,
writes the answer as a JSON sidecar in done/ and moves the original there. It honours no
rate limit: it stands for a client where the API is not the limit (a high-limit contract,
an on-premises Beorg). Python 3 standard library only.

`cargo bench --bench throughput` runs it on the same workload as the daemon (200 files of
5 MB on tmpfs, an emulator on loopback) in the same run, and compares documents per second,
CPU seconds and peak memory:

    python3 benches/reference/client.py --inbox IN --done DONE --base-url URL \
        --token TOKEN --machine-uid UID --project-id U_RATE_2 --type PASSPORT
"""

import argparse
import base64
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

POLL_EVERY = 0.5


def post_json(url, payload):
    data = json.dumps(payload).encode("ascii")
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def fetch_result(args, document_id):
    url = f"{args.base_url}/api/document/result/{document_id}?token={args.token}"
    while True:
        time.sleep(POLL_EVERY)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code != 425:
                raise


def process(args, name):
    path = os.path.join(args.inbox, name)
    with open(path, "rb") as f:
        image = base64.b64encode(f.read()).decode("ascii")
    body = {
        "project_id": args.project_id,
        "token": args.token,
        "machine_uid": args.machine_uid,
        "images": [image],
        "process_info": [{"type": args.type}],
    }
    submitted = post_json(f"{args.base_url}/api/bescan/add_document", body)
    result = fetch_result(args, submitted["document_id"])
    stem = os.path.splitext(name)[0]
    with open(os.path.join(args.done, stem + ".json"), "w") as f:
        json.dump(result, f)
    shutil.move(path, os.path.join(args.done, name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ["inbox", "done", "base-url", "token", "machine-uid", "project-id", "type"]:
        parser.add_argument("--" + option, required=True)
    args = parser.parse_args()
    names = sorted(
        n for n in os.listdir(args.inbox) if os.path.isfile(os.path.join(args.inbox, n))
    )
    failures = 0
    with ThreadPoolExecutor() as pool:
        for future in [pool.submit(process, args, n) for n in names]:
            try:
                future.result()
            except Exception as error:  # one bad file must not stop the others
                failures += 1
                print(f"failed: {error}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
