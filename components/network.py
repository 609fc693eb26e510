"""VPC the router, cache and GPU nodes live in: private by default."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_aws as aws

from .common import account_and_region, assume_role_policy, child, key_policy, kms_key, logs_may_use, policy_json


#: Index of the first router subnet among the VPC's blocks (private subnets take 0–2, public 8–10).
ROUTER_BLOCK = 4


@dataclass
class NetworkArgs:
    region: str
    tags: dict[str, str]
    cidr: str = "10.40.0.0/16"
    availability_zones: int = 2
    #: `none` keeps the VPC fully private (VPC endpoints only).
    nat_gateways: Literal["none", "single", "per-az"] = "single"
    flow_logs: bool = True
    flow_log_retention_days: int = 90
    #: Interface endpoints (service suffixes) shared by every workload.
    interface_endpoints: list[str] = field(default_factory=lambda: ["secretsmanager", "sts", "logs"])


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    endpoint_security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:network:Network", name, None, opts)
        self.args, self.prefix = args, name
        tags = args.tags
        net = ipaddress.ip_network(args.cidr)
        # /20s: private subnets first, public after; room for 8 of each.
        blocks = list(net.subnets(new_prefix=min(net.prefixlen + 4, 28)))
        zones = aws.get_availability_zones(state="available").names[: args.availability_zones]

        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_hostnames=True,
                               enable_dns_support=True, tags={**tags, "Name": f"{name}-vpc"}, opts=child(self))
        self.vpc_id = self.vpc.id
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, tags=tags, opts=child(self))

        self.private_subnets = [
            aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=self.vpc.id, cidr_block=str(blocks[i]), availability_zone=az,
                           map_public_ip_on_launch=False,
                           tags={**tags, "Name": f"{name}-private-{az}", "kubernetes.io/role/internal-elb": "1"},
                           opts=child(self))
            for i, az in enumerate(zones)
        ]
        self.private_subnet_ids = [s.id for s in self.private_subnets]
        self.private_cidrs = [str(blocks[i]) for i in range(len(zones))]
        # The router's own subnets (blocks 4–6 of the private half): no node or pod takes an
        # address there (the VPC CNI gives pods addresses from the nodes' subnets), so "from
        # these CIDRs" in a security group or NetworkPolicy means the router and nothing else.
        self.router_subnets = [
            aws.ec2.Subnet(f"{name}-router-{i}", vpc_id=self.vpc.id, cidr_block=str(blocks[ROUTER_BLOCK + i]),
                           availability_zone=az, map_public_ip_on_launch=False,
                           tags={**tags, "Name": f"{name}-router-{az}"}, opts=child(self))
            for i, az in enumerate(zones)
        ]
        self.router_subnet_ids = [s.id for s in self.router_subnets]
        self.router_cidrs = [str(blocks[ROUTER_BLOCK + i]) for i in range(len(zones))]

        nat_ids: list[pulumi.Output[str]] = []
        #: Egress addresses (allow-listed by outside services such as Azure OpenAI).
        self.nat_public_ips: list[pulumi.Output[str]] = []
        if args.nat_gateways != "none":
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=tags, opts=child(self))
            public_rt = aws.ec2.RouteTable(
                f"{name}-public-rt", vpc_id=self.vpc.id, tags=tags, opts=child(self),
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)])
            nat_zones = zones if args.nat_gateways == "per-az" else zones[:1]
            for i, az in enumerate(nat_zones):
                public = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=self.vpc.id, cidr_block=str(blocks[8 + i]),
                                        availability_zone=az, map_public_ip_on_launch=False,
                                        tags={**tags, "Name": f"{name}-public-{az}", "kubernetes.io/role/elb": "1"},
                                        opts=child(self))
                aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_rt.id,
                                              opts=child(self))
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags=tags, opts=child(self))
                nat = aws.ec2.NatGateway(f"{name}-nat-{i}", allocation_id=eip.id, subnet_id=public.id, tags=tags,
                                         opts=child(self, depends_on=[igw]))
                nat_ids.append(nat.id)
                self.nat_public_ips.append(eip.public_ip)

        self.private_route_tables = []
        for i, subnet in enumerate(self.private_subnets):
            routes = [aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_ids[i % len(nat_ids)])] \
                if nat_ids else []
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{i}", vpc_id=self.vpc.id, routes=routes, tags=tags,
                                    opts=child(self))
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=rt.id,
                                          opts=child(self))
            aws.ec2.RouteTableAssociation(f"{name}-router-{i}", subnet_id=self.router_subnets[i].id,
                                          route_table_id=rt.id, opts=child(self))
            self.private_route_tables.append(rt)

        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in self.private_route_tables],
            tags=tags, opts=child(self))
        #: S3 through the gateway endpoint: a security group admits it by this prefix list.
        self.s3_prefix_list_id = self.s3_endpoint.prefix_list_id

        # Interface endpoints admit HTTPS from inside the VPC only.
        self.endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints", vpc_id=self.vpc.id, description="VPC interface endpoints: HTTPS from the VPC",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=443, to_port=443,
                                                      cidr_blocks=[args.cidr], description="HTTPS from the VPC")],
            tags=tags, opts=child(self))
        self.endpoint_security_group_id = self.endpoint_sg.id
        for service in args.interface_endpoints:
            self.interface_endpoint(service, [self.endpoint_sg.id])

        if args.flow_logs:
            self._flow_logs(name, tags, args.flow_log_retention_days)

        self.register_outputs({"vpcId": self.vpc_id, "privateSubnetIds": self.private_subnet_ids,
                               "routerSubnetIds": self.router_subnet_ids})

    def interface_endpoint(self, service: str, security_group_ids: list[pulumi.Input[str]],
                           parent: pulumi.Resource | None = None) -> aws.ec2.VpcEndpoint:
        """A private-DNS interface endpoint for `com.amazonaws.<region>.<service>`."""
        return aws.ec2.VpcEndpoint(
            f"{self.prefix}-{service.replace('.', '-')}", vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{self.args.region}.{service}", vpc_endpoint_type="Interface",
            private_dns_enabled=True, subnet_ids=self.private_subnet_ids, security_group_ids=security_group_ids,
            tags=self.args.tags, opts=child(parent or self))

    def _flow_logs(self, name: str, tags: dict[str, str], retention: int) -> None:
        # Flow logs name every peer and port; the group's generated name is unknown until created,
        # so the key admits CloudWatch Logs for this account's groups in this region.
        account, region = account_and_region()
        key = kms_key(self, f"{name}-flow-logs", f"{name}: VPC flow logs", tags,
                      key_policy(account, region, statements=(logs_may_use(region, account),)))
        group = aws.cloudwatch.LogGroup(f"{name}-flow-logs", retention_in_days=retention, kms_key_id=key.arn, tags=tags,
                                        opts=child(self))
        role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=assume_role_policy("vpc-flow-logs.amazonaws.com"),
                            tags=tags, opts=child(self))
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, opts=child(self), policy=policy_json([{
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
        }]))
        aws.ec2.FlowLog(f"{name}-flow-log", vpc_id=self.vpc.id, traffic_type="ALL", log_destination=group.arn,
                        log_destination_type="cloud-watch-logs", iam_role_arn=role.arn, tags=tags, opts=child(self))
