"""reconciler: roll new machine images out to CloudFormation stacks, migrations first."""

__version__ = "0.1.0"
