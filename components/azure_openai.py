"""Azure OpenAI: account, one deployment per tier, and the router's credential."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
from pulumi_azure_native import cognitiveservices as cs
from pulumi_azure_native import network, privatedns, resources

from .common import child


@dataclass
class AzureDeploymentSpec:
    tier: str
    model: str
    model_version: str
    sku: str = "GlobalStandard"
    capacity: int = 10
    rai_policy: str = "Microsoft.DefaultV2"


@dataclass
class AzureOpenAIAccountArgs:
    location: str
    subdomain: str
    deployments: list[AzureDeploymentSpec]
    tags: dict[str, str]
    #: No public network access (reach it over a private endpoint / VPN).
    private: bool = True
    #: Entra ID principal the router uses; when set, key auth is disabled.
    entra_principal_id: Optional[str] = None
    #: Egress IPs (NAT) allowed through the account firewall when public.
    allowed_ips: list[pulumi.Input[str]] = field(default_factory=list)
    #: KMS key for the Secrets Manager copy of the credential.
    kms_key_arn: Optional[pulumi.Input[str]] = None
    #: Address space of the VNet holding the private endpoint (private only).
    vnet_cidr: str = "10.90.0.0/24"


class AzureOpenAIAccount(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AzureOpenAIAccountArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:azure:AzureOpenAI", name, None, opts)
        tags = args.tags
        group = resources.ResourceGroup(f"{name}-rg", location=args.location, tags=tags, opts=child(self))
        local_auth = args.entra_principal_id is None
        account = cs.Account(
            f"{name}-account", resource_group_name=group.name, location=args.location, kind="OpenAI",
            sku=cs.SkuArgs(name="S0"), tags={**tags, "llm-blueprint-auth": "key" if local_auth else "entra"},
            opts=child(self),
            identity=cs.IdentityArgs(type="SystemAssigned"),
            properties=cs.AccountPropertiesArgs(
                custom_sub_domain_name=args.subdomain,
                public_network_access="Disabled" if args.private else "Enabled",
                disable_local_auth=not local_auth,
                network_acls=cs.NetworkRuleSetArgs(
                    default_action="Deny",
                    ip_rules=[cs.IpRuleArgs(value=ip) for ip in args.allowed_ips]),
            ))
        # Parallel deployment creates fail with RequestConflict: chain them.
        previous: Optional[cs.Deployment] = None
        self.deployments: dict[str, cs.Deployment] = {}
        for spec in args.deployments:
            previous = cs.Deployment(
                f"{name}-{spec.tier}", account_name=account.name, resource_group_name=group.name,
                deployment_name=spec.tier,
                sku=cs.SkuArgs(name=spec.sku, capacity=spec.capacity),
                properties=cs.DeploymentPropertiesArgs(
                    model=cs.DeploymentModelArgs(format="OpenAI", name=spec.model, version=spec.model_version),
                    rai_policy_name=spec.rai_policy, version_upgrade_option="NoAutoUpgrade"),
                opts=child(self, depends_on=[previous] if previous else None))
            self.deployments[spec.tier] = previous

        if args.private:
            self._private_endpoint(name, args, group, account)

        self.endpoint = pulumi.Output.concat("https://", args.subdomain, ".openai.azure.com/")
        # The router's credential reaches it through Secrets Manager only.
        self.secret = aws.secretsmanager.Secret(f"{name}-credential", description="Azure OpenAI credential for the router",
                                                kms_key_id=args.kms_key_arn, recovery_window_in_days=7, tags=tags,
                                                opts=child(self))
        if local_auth:
            keys = cs.list_account_keys_output(account_name=account.name, resource_group_name=group.name)
            secret_string = pulumi.Output.json_dumps({"endpoint": self.endpoint, "auth": "api-key", "apiKey": keys.key1})
        else:
            secret_string = pulumi.Output.json_dumps({"endpoint": self.endpoint, "auth": "entra",
                                                      "principalId": args.entra_principal_id})
        aws.secretsmanager.SecretVersion(f"{name}-credential", secret_id=self.secret.id,
                                         secret_string=pulumi.Output.secret(secret_string), opts=child(self))
        self.secret_arn = self.secret.arn
        self.register_outputs({"endpoint": self.endpoint, "secretArn": self.secret_arn,
                               "deployments": list(self.deployments)})

    def _private_endpoint(self, name: str, args: AzureOpenAIAccountArgs, group: resources.ResourceGroup,
                          account: cs.Account) -> None:
        """VNet + private endpoint + private DNS, so the account answers only on a private IP.

        The router runs in AWS: it reaches this VNet only over a site-to-site VPN
        or interconnect, which this blueprint does not create."""
        tags = args.tags
        vnet = network.VirtualNetwork(f"{name}-vnet", resource_group_name=group.name, location=args.location,
                                      address_space=network.AddressSpaceArgs(address_prefixes=[args.vnet_cidr]),
                                      tags=tags, opts=child(self))
        subnet = network.Subnet(f"{name}-endpoints", resource_group_name=group.name, virtual_network_name=vnet.name,
                                address_prefix=args.vnet_cidr, private_endpoint_network_policies="Disabled",
                                opts=child(self))
        endpoint = network.PrivateEndpoint(
            f"{name}-endpoint", resource_group_name=group.name, location=args.location, tags=tags,
            subnet=network.SubnetArgs(id=subnet.id), opts=child(self),
            private_link_service_connections=[network.PrivateLinkServiceConnectionArgs(
                name="openai", private_link_service_id=account.id, group_ids=["account"])])
        zone = privatedns.PrivateZone(f"{name}-dns", resource_group_name=group.name, location="global",
                                      private_zone_name="privatelink.openai.azure.com", tags=tags, opts=child(self))
        privatedns.VirtualNetworkLink(f"{name}-dns-link", resource_group_name=group.name, location="global",
                                      private_zone_name=zone.name, registration_enabled=False,
                                      virtual_network=privatedns.SubResourceArgs(id=vnet.id), tags=tags,
                                      opts=child(self))
        network.PrivateDnsZoneGroup(f"{name}-dns-group", resource_group_name=group.name,
                                    private_endpoint_name=endpoint.name, opts=child(self),
                                    private_dns_zone_configs=[network.PrivateDnsZoneConfigArgs(
                                        name="openai", private_dns_zone_id=zone.id)])
