"""seqlit's command line: `seqlit fit|validate|test|predict|audit|doctor|compare --config X.yaml`, and
`seqlit report RUN_DIR` (an HTML page of a finished run, from its files)."""

from seqlit.cli.app import BASE_CONFIG, DATA_TO_MODEL_LINKS, SeqlitCLI, TimedFitCLI, default_precision
from seqlit.cli.main import main, quiet_lightning

__all__ = ["BASE_CONFIG", "DATA_TO_MODEL_LINKS", "SeqlitCLI", "TimedFitCLI", "default_precision", "main", "quiet_lightning"]
