"""Datasets and label schemas: load_dataset reads folders, CSV manifests, MedMNIST .npz and zips safely."""

from core.data.dataset import Dataset
from core.data.loading import load_dataset
from core.data.tasks import Task, get_task, list_tasks
from core.errors import InputError

__all__ = ["Dataset", "InputError", "Task", "get_task", "list_tasks", "load_dataset"]
