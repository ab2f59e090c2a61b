# %% [markdown]
# # Root finding with cola, the way a teacher would do it in Jupyter
#
# Submit the bisection problem x³ + 4x² − 10 = 0 on [1, 2] (tolerance 1e-10) to cola's
# JSON API, wait for it, download the output zip, and plot the iteration table.
#
# Set `COLA_URL` (default http://127.0.0.1:8080) and `COLA_TOKEN` (with `cola up --dev` the
# token is in `.cola/dev-token`). Needs `requests` and `matplotlib`
# (`pip install requests matplotlib`).

# %%
import csv
import io
import json
import os
import pathlib
import sys
import zipfile

import requests

URL = os.environ.get("COLA_URL", "http://127.0.0.1:8080")
TOKEN = os.environ.get("COLA_TOKEN") or pathlib.Path(".cola/dev-token").read_text().strip()
session = requests.Session()
session.headers["Authorization"] = f"Bearer {TOKEN}"

# %% [markdown]
# Which methods are there, and what does bisection take?

# %%
methods = session.get(f"{URL}/api/v1/numeric/methods", timeout=10).json()["methods"]
bisection = next(m for m in methods if m["name"] == "bisection")
for p in bisection["parameters"]:
    print(f'{p["name"]:>9} ({p["type"]}): {p["meaning"]}')

# %% [markdown]
# Submit the problem and wait (up to 30 s) for its end, in one request.

# %%
problem = {
    "method": "bisection",
    "f": "x^3 + 4*x^2 - 10",
    "a": 1,
    "b": 2,
    "tol": 1e-10,
    "max_iter": 100,
}
answer = session.post(
    f"{URL}/api/v1/jobs",
    params={"wait": 30},
    json={"language": "numeric", "problem": problem},
    timeout=40,
)
if answer.status_code == 400:
    # A mistake in the problem: the answer says what and where (e.g. field "problem.f").
    raise SystemExit(f'{answer.json()["field"]}: {answer.json()["error"]}')
answer.raise_for_status()
job = answer.json()
print(job["status"], job["reason"] or "", json.dumps(job["result"], indent=2))

# %% [markdown]
# Download the zip: `result.json`, `table.csv` (one row per iteration) and `plot.svg`.

# %%
output = session.get(f'{URL}{job["output_url"]}', timeout=30)
output.raise_for_status()
archive = zipfile.ZipFile(io.BytesIO(output.content))
print(archive.namelist())
rows = list(csv.DictReader(io.StringIO(archive.read("table.csv").decode())))
print(f"{len(rows)} iterations; last: {rows[-1]}")

# %% [markdown]
# Plot how the midpoint converges and how the error shrinks (log scale).

# %%
import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # run as a script: write a PNG instead of showing a window
import matplotlib.pyplot as plt

iterations = [int(r["iteration"]) for r in rows]
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.plot(iterations, [float(r["midpoint"]) for r in rows], marker="o")
left.set(xlabel="iteration", ylabel="midpoint", title="Bisection: the midpoint")
right.semilogy(iterations, [float(r["error"]) for r in rows], marker="o")
right.set(xlabel="iteration", ylabel="error bound", title="Bisection: the error")
fig.tight_layout()
if "ipykernel" not in sys.modules:
    fig.savefig("bisection.png", dpi=120)
    print("wrote bisection.png")
else:
    plt.show()
