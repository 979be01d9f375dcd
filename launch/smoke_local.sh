#!/usr/bin/env bash
# The README's main job: the whole product end to end on a CPU with bundled synthetic data.
#
#   generate (Learning-Ally-shaped synthetic logs) -> preprocess (Beam, DirectRunner) -> train STUDY and
#   Individual (smoke presets) -> evaluate both on the test split -> compare -> export STUDY -> recommend
#
# Usage: bash launch/smoke_local.sh [--out=runs/smoke] [--num_students=2000] [--steps=300]
# Re-running resumes: finished stages are skipped, training resumes from its last checkpoint.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="runs/smoke"
NUM_STUDENTS=2000
STEPS=300
for arg in "$@"; do
  case "$arg" in
    --out=*) OUT="${arg#*=}" ;;
    --num_students=*) NUM_STUDENTS="${arg#*=}" ;;
    --steps=*) STEPS="${arg#*=}" ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "smoke_local.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

source "$ROOT/launch/setup_env.sh"
cd "$ROOT"
mkdir -p "$OUT"
START=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - START ))s] $*"; }

RAW="$OUT/raw"
DATA="$OUT/processed"
if [ ! -f "$RAW/interactions.csv" ]; then
  stage "generate $NUM_STUDENTS synthetic students -> $RAW"
  study generate --num_students="$NUM_STUDENTS" --seed=0 --out_dir="$RAW"
fi

if [ ! -f "$DATA/stats.json" ]; then
  stage "preprocess (Apache Beam, DirectRunner) -> $DATA"
  study preprocess --interactions="$RAW/interactions.csv" --roster="$RAW/roster.csv" \
    --schools="$RAW/schools.csv" --output_dir="$DATA" --num_packings=2 --runner=DirectRunner
fi

COMMON=(--config.data_dir="$DATA" --config.steps="$STEPS" --config.evals.loss.every=0)
for model in study individual; do
  stage "train $model ($STEPS steps, configs/$model.py:smoke) -> $OUT/$model"
  study train --config="configs/$model.py:smoke" --workdir="$OUT/$model" "${COMMON[@]}"
  stage "evaluate $model on the test split -> $OUT/$model/eval_test/{loss,hits}"
  study eval --config="configs/$model.py:smoke" --workdir="$OUT/$model" --config.data_dir="$DATA" \
    --num_bootstrap=20
done

stage "compare -> $OUT/compare"
study compare --metrics="study=$OUT/study/eval_test/hits/metrics.json,individual=$OUT/individual/eval_test/hits/metrics.json" \
  --output_dir="$OUT/compare"

stage "export STUDY -> $OUT/export/study"
study export --config=configs/study.py:smoke --workdir="$OUT/study" --config.data_dir="$DATA" \
  --output_dir="$OUT/export/study" --top_k=50

stage "recommend for three students of the later period, with their classmates' histories"
python - "$RAW" "$OUT/requests.json" <<'EOF'
import json, sys
import pandas as pd
raw, out = sys.argv[1:]
inter = pd.read_csv(f"{raw}/interactions.csv").sort_values(["student_id", "timestamp"], kind="stable")
roster = pd.read_csv(f"{raw}/roster.csv").set_index("student_id")
query_time = int(inter["timestamp"].quantile(0.9))
seen = inter[inter["timestamp"] < query_time].join(roster[["school_id", "grade"]], on="student_id")
students = seen.groupby("student_id").size().sort_values(ascending=False).index[:3]
requests = []
for student in students:
    school, grade = roster.loc[student, ["school_id", "grade"]]
    classroom = seen[(seen["school_id"] == school) & (seen["grade"] == grade)]
    def events(frame):
        return [[str(item), int(t)] for item, t in zip(frame["item_id"], frame["timestamp"])]
    requests.append({
        "id": str(student),
        "history": events(classroom[classroom["student_id"] == student])[-30:],
        "classmates": {str(s): events(f)[-10:] for s, f in classroom[classroom["student_id"] != student]
                       .groupby("student_id")},
        "grade": int(grade) if str(grade).isdigit() else 0,
        "query_time": query_time,
    })
with open(out, "w") as f:
    json.dump(requests, f, indent=1)
print(f"wrote {len(requests)} requests to {out}")
EOF
study recommend --artifact="$OUT/export/study" --requests="$OUT/requests.json" --output="$OUT/responses.json" --k=5
python -c "
import json; r = json.load(open('$OUT/responses.json'))
for resp in r['responses']:
    print(resp['id'], [(x['item_id'], round(x['score'], 2)) for x in resp['recommendations']])"

stage "done: data in $DATA, runs in $OUT/{study,individual}, comparison in $OUT/compare/comparison.md"
