"""The matrix runner: `baq run` trains a matrix's cells, `baq status` shows them.

Modules, each importing only the ones above it:
- `jobs`: the job protocol (a job knows its cells, its device and how to execute itself), the one event type
  a job reports through, and `run_job`, which turns stop requests and errors into outcomes;
- `store`: the runner's MLflow queries (a cell's runs, finished runs, superseding);
- `cell`: one cell as one MLflow run under its lock (`CellJob`); `seed_group`: cells that differ only in the
  seed as one batched job (`SeedGroupJob`);
- `feed`: events onto the progress board; `local` and `ray_backend`: the two backends;
- `run`: `run_matrix`, the entry point; `status`: `matrix_status`.
"""

from suite.runner.cell import CellJob, CellLock, cell_dir, cell_tags, execute_cell
from suite.runner.jobs import Event, Job, Report, run_job
from suite.runner.run import print_dry_run, run_matrix
from suite.runner.seed_group import SeedGroupJob, group_jobs
from suite.runner.status import matrix_status
from suite.runner.store import cell_runs

__all__ = ["CellJob", "CellLock", "Event", "Job", "Report", "SeedGroupJob", "cell_dir", "cell_runs", "cell_tags",
           "execute_cell", "group_jobs", "matrix_status", "print_dry_run", "run_job", "run_matrix"]
