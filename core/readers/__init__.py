"""Expert readings: CSV import, the in-app blinded reader study, simulated demo readers, reader-vs-model comparisons."""

from core.readers.auth import (ReaderAuthError, authenticate_reader, check_reader_password, passwords_configured,
                               remove_reader_password, set_reader_password)
from core.readers.compare import (DEFAULT_THRESHOLD, PAIRED_DIFFERENCE_METHOD, model_metrics,
                                  model_operating_point, model_roc, paired_comparison, paired_difference_ci,
                                  reader_metrics, resolve_view, truth_labels)
from core.readers.readings import (READINGS_COLUMNS, REQUIRED_READING_COLUMNS, SIMULATED_PREFIX, delete_readings,
                                   is_simulated, list_readings, load_readings, reading_coverage, store_readings)
from core.readers.simulated import (DEFAULT_PROFILES, SimulatedProfile, simulate_readers, simulated_profile,
                                    store_simulated_readers)
from core.readers.summaries import reader_confusions, reader_summaries
from core.readers.study import (CONFIDENCE_LEVELS, BlindingError, Item, Progress, ReaderSession, Study,
                                create_study, end_early, finish, get_study, item_at, join_study, list_studies,
                                next_item, own_answer, progress, reader_results, record_answer, study_readings,
                                study_truth)
from core.readers.tables import (compare_readers_to_model, lr_table, reader_report, roc_points,
                                 weighted_error_table)
from core.store.csv_safe import csv_bytes as export_csv  # the one CSV writer, kept under the name pages use

__all__ = [
    "READINGS_COLUMNS", "REQUIRED_READING_COLUMNS", "SIMULATED_PREFIX", "delete_readings", "is_simulated", "list_readings", "load_readings",
    "reading_coverage", "store_readings",
    "ReaderAuthError", "authenticate_reader", "check_reader_password", "passwords_configured",
    "remove_reader_password", "set_reader_password",
    "DEFAULT_PROFILES", "SimulatedProfile", "simulate_readers", "simulated_profile", "store_simulated_readers",
    "CONFIDENCE_LEVELS", "BlindingError", "Item", "Progress", "ReaderSession", "Study", "create_study", "end_early",
    "finish", "get_study", "item_at", "join_study", "list_studies", "next_item", "own_answer", "progress",
    "reader_results", "record_answer", "study_readings", "study_truth",
    "DEFAULT_THRESHOLD", "PAIRED_DIFFERENCE_METHOD", "model_metrics", "model_operating_point", "model_roc",
    "paired_comparison", "paired_difference_ci", "reader_metrics", "resolve_view", "truth_labels",
    "reader_confusions", "reader_summaries",
    "compare_readers_to_model", "export_csv", "lr_table", "reader_report", "roc_points", "weighted_error_table",
]
