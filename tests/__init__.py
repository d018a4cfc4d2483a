"""tuitune's tests, one folder per area; shared helpers import as tests.<module> (tests.helpers, tests.ui.pilot)."""
