"""Packaging lives in setup.cfg; this file lets older pip versions do editable installs."""
from setuptools import setup

setup()
