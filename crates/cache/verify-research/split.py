"""Write the validation part (30 %, featurize.is_fit false) of each visible file to
$VERIFY_WORK/<set>.validation.jsonl, for `infermux cache eval --pairs`.

usage: python split.py
"""
import json, os
from featurize import is_fit, DATA, SETS, WORK

for s in SETS:
    with open(f"{WORK}/{s}.validation.jsonl", "w") as out:
        for line in open(f"{DATA}/{s}.visible.jsonl"):
            if not is_fit(json.loads(line)["id"]):
                out.write(line)
