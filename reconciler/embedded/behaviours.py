"""What changing a resource's property does to it, as the AWS resource reference documents.

Rules of this file:
- Data, read by `changes.py`: one row per (resource type, property), holding the reference's
  "Update requires" label word for word, so a row can be checked against the page it cites.
- The source is AWS's "Resource and property reference" (the CloudFormation User Guide),
  as published in awsdocs/aws-cloudformation-user-guide at its last periodic update
  (19 September 2023, files `doc_source/<page>.md` named above each table). The pages now
  live in AWS's "Template Reference Guide": a label changed there is a row to revisit.
- A label maps to the change set's `RequiresRecreation` (and so `Replacement`):
  "Replacement" is Always; "No interruption" and "Some interruptions" are Never (the
  resource keeps its physical id; an instance may restart); "Conditional" is Conditionally.
  The reference uses "Conditional" nowhere; this table uses it where the reference's own
  text says that a change sometimes replaces the resource (see the RDS rows).
- A type or property missing here is Conditionally: the emulator cannot say the resource
  survives, and a guard that reads Conditional as "may replace" errs on the safe side.
"""

from __future__ import annotations

from collections.abc import Mapping

NO_INTERRUPTION = "No interruption"
SOME_INTERRUPTIONS = "Some interruptions"
REPLACEMENT = "Replacement"
CONDITIONAL = "Conditional"

RECREATION = {
    REPLACEMENT: "Always",
    CONDITIONAL: "Conditionally",
    SOME_INTERRUPTIONS: "Never",
    NO_INTERRUPTION: "Never",
}
REPLACEMENT_OF = {"Always": "True", "Conditionally": "Conditional", "Never": "False"}

_NI, _SI, _R, _C = NO_INTERRUPTION, SOME_INTERRUPTIONS, REPLACEMENT, CONDITIONAL

UPDATE_REQUIRES: Mapping[str, Mapping[str, str]] = {
    # aws-resource-ec2-launchtemplate.md: a changed LaunchTemplateData is a new version of
    # the same template (LatestVersionNumber moves), never a new template.
    "AWS::EC2::LaunchTemplate": {
        "LaunchTemplateData": _NI,
        "LaunchTemplateName": _R,
        "TagSpecifications": _NI,
        "VersionDescription": _NI,
    },
    # aws-properties-as-group.md. A group is replaced on a LaunchTemplate change only under
    # an AutoScalingReplacingUpdate policy, which the shipped template does not use.
    "AWS::AutoScaling::AutoScalingGroup": {
        "AutoScalingGroupName": _R,
        "AvailabilityZones": _NI,
        "CapacityRebalance": _NI,
        "Context": _NI,
        "Cooldown": _NI,
        "DefaultInstanceWarmup": _NI,
        "DesiredCapacity": _NI,
        "DesiredCapacityType": _NI,
        "HealthCheckGracePeriod": _NI,
        "HealthCheckType": _NI,
        "InstanceId": _R,
        "LaunchConfigurationName": _NI,
        "LaunchTemplate": _NI,
        "LifecycleHookSpecificationList": _NI,
        "LoadBalancerNames": _NI,
        "MaxInstanceLifetime": _NI,
        "MaxSize": _NI,
        "MetricsCollection": _NI,
        "MinSize": _NI,
        "MixedInstancesPolicy": _NI,
        "NewInstancesProtectedFromScaleIn": _NI,
        "NotificationConfigurations": _NI,
        "PlacementGroup": _NI,
        "ServiceLinkedRoleARN": _NI,
        "Tags": _NI,
        "TargetGroupARNs": _NI,
        "TerminationPolicies": _NI,
        "VPCZoneIdentifier": _SI,
    },
    # aws-properties-ec2-elb.md
    "AWS::ElasticLoadBalancing::LoadBalancer": {
        "AccessLoggingPolicy": _NI,
        "AppCookieStickinessPolicy": _NI,
        "AvailabilityZones": _SI,
        "ConnectionDrainingPolicy": _NI,
        "ConnectionSettings": _NI,
        "CrossZone": _NI,
        "HealthCheck": _SI,
        "Instances": _NI,
        "LBCookieStickinessPolicy": _NI,
        "Listeners": _NI,
        "LoadBalancerName": _R,
        "Policies": _NI,
        "Scheme": _R,
        "SecurityGroups": _NI,
        "Subnets": _SI,
        "Tags": _NI,
    },
    # aws-properties-ec2-instance.md
    "AWS::EC2::Instance": {
        "AdditionalInfo": _SI,
        "Affinity": _SI,
        "AvailabilityZone": _R,
        "BlockDeviceMappings": _SI,
        "CpuOptions": _R,
        "CreditSpecification": _NI,
        "DisableApiTermination": _NI,
        "EbsOptimized": _SI,
        "ElasticGpuSpecifications": _R,
        "ElasticInferenceAccelerators": _R,
        "EnclaveOptions": _R,
        "HibernationOptions": _R,
        "HostId": _SI,
        "HostResourceGroupArn": _R,
        "IamInstanceProfile": _NI,
        "ImageId": _R,
        "InstanceInitiatedShutdownBehavior": _NI,
        "InstanceType": _SI,
        "Ipv6AddressCount": _R,
        "Ipv6Addresses": _R,
        "KernelId": _SI,
        "KeyName": _R,
        "LaunchTemplate": _R,
        "LicenseSpecifications": _R,
        "Monitoring": _NI,
        "NetworkInterfaces": _R,
        "PlacementGroupName": _R,
        "PrivateDnsNameOptions": _SI,
        "PrivateIpAddress": _R,
        "PropagateTagsToVolumeOnCreation": _NI,
        "RamdiskId": _SI,
        "SecurityGroupIds": _SI,
        "SecurityGroups": _R,
        "SourceDestCheck": _NI,
        "SsmAssociations": _NI,
        "SubnetId": _R,
        "Tags": _NI,
        "Tenancy": _SI,
        "UserData": _SI,
        "Volumes": _NI,
    },
    # aws-resource-rds-dbinstance.md, with two rows on the safe side of their label:
    # - DBSnapshotIdentifier is labelled "Some interruptions", but the same entry says that
    #   a value other than the one restored from "restores a new DB instance ... and the
    #   original DB instance is deleted": a replacement, and a change set only reports a
    #   changed value.
    # - Engine is labelled "Some interruptions", but AWS's published resource schema for the
    #   type (the one cfn-lint bundles) lists it in conditionalCreateOnlyProperties: moving
    #   to another engine is a new instance. Conditional, not True: some moves are upgrades.
    "AWS::RDS::DBInstance": {
        "AllocatedStorage": _NI,
        "AllowMajorVersionUpgrade": _NI,
        "AssociatedRoles": _NI,
        "AutoMinorVersionUpgrade": _SI,
        "AvailabilityZone": _SI,
        "BackupRetentionPeriod": _SI,
        "CACertificateIdentifier": _NI,
        "CertificateDetails": _NI,
        "CertificateRotationRestart": _NI,
        "CharacterSetName": _R,
        "CopyTagsToSnapshot": _NI,
        "CustomIAMInstanceProfile": _R,
        "DBClusterIdentifier": _R,
        "DBClusterSnapshotIdentifier": _SI,
        "DBInstanceClass": _SI,
        "DBInstanceIdentifier": _R,
        "DBName": _R,
        "DBParameterGroupName": _SI,
        "DBSecurityGroups": _NI,
        "DBSnapshotIdentifier": _R,
        "DBSubnetGroupName": _R,
        "DeleteAutomatedBackups": _NI,
        "DeletionProtection": _NI,
        "Domain": _NI,
        "DomainAuthSecretArn": _NI,
        "DomainDnsIps": _NI,
        "DomainFqdn": _NI,
        "DomainIAMRoleName": _NI,
        "DomainOu": _NI,
        "EnableCloudwatchLogsExports": _NI,
        "EnableIAMDatabaseAuthentication": _NI,
        "EnablePerformanceInsights": _NI,
        "Endpoint": _NI,
        "Engine": _C,
        "EngineVersion": _SI,
        "Iops": _NI,
        "KmsKeyId": _R,
        "LicenseModel": _NI,
        "ManageMasterUserPassword": _NI,
        "MasterUsername": _R,
        "MasterUserPassword": _NI,
        "MasterUserSecret": _NI,
        "MaxAllocatedStorage": _NI,
        "MonitoringInterval": _NI,
        "MonitoringRoleArn": _NI,
        "MultiAZ": _SI,
        "NcharCharacterSetName": _R,
        "NetworkType": _NI,
        "OptionGroupName": _NI,
        "PerformanceInsightsKMSKeyId": _R,
        "PerformanceInsightsRetentionPeriod": _NI,
        "Port": _R,
        "PreferredBackupWindow": _NI,
        "PreferredMaintenanceWindow": _SI,
        "ProcessorFeatures": _NI,
        "PromotionTier": _NI,
        "PubliclyAccessible": _NI,
        "ReplicaMode": _NI,
        "RestoreTime": _SI,
        "SourceDBClusterIdentifier": _SI,
        "SourceDBInstanceAutomatedBackupsArn": _SI,
        "SourceDBInstanceIdentifier": _SI,
        "SourceDbiResourceId": _SI,
        "SourceRegion": _R,
        "StorageEncrypted": _R,
        "StorageThroughput": _NI,
        "StorageType": _SI,
        "Tags": _NI,
        "Timezone": _R,
        "UseDefaultProcessorFeatures": _NI,
        "UseLatestRestorableTime": _SI,
        "VPCSecurityGroups": _NI,
    },
}

# Resource attributes other than Properties (Metadata, UpdatePolicy, DeletionPolicy, ...)
# change what CloudFormation does, never the resource itself.
NOT_PROPERTIES = "Never"


def update_requires(resource_type: str, prop: str) -> str:
    """The reference's label for changing `prop`; Conditional when the table lacks it."""
    return UPDATE_REQUIRES.get(resource_type, {}).get(prop, CONDITIONAL)


def requires_recreation(resource_type: str, attribute: str, prop: str | None) -> str:
    """`RequiresRecreation` of a change set target: Always, Conditionally or Never.

    `Tags` is a property reported under its own attribute, as in AWS's change sets."""
    if attribute == "Tags":
        return RECREATION[update_requires(resource_type, "Tags")]
    if attribute != "Properties" or prop is None:
        return NOT_PROPERTIES
    return RECREATION[update_requires(resource_type, prop)]
