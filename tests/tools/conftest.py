import sys
from pathlib import Path

# tools/ is not an installed package: make `import tools.m2tiny` work however pytest is started.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
