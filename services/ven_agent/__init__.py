"""The site agent (an OpenADR 3.0.1 VEN per site) and the simulated sites it controls; see
services/ven_agent/README.md."""

from services.ven_agent.agent import AgentEvent, AgentStats, SiteAgent, VenLink
from services.ven_agent.runtime import RunStats, Simulation, Trace
from services.ven_agent.sim import Broken, BrokenMode, PlugSession, SimSite, World, sites_from_fleet
from services.ven_agent.webhook import Receiver, serve_receiver

__all__ = ["AgentEvent", "AgentStats", "Broken", "BrokenMode", "PlugSession", "Receiver", "RunStats", "SimSite",
           "Simulation", "SiteAgent", "Trace", "VenLink", "World", "serve_receiver", "sites_from_fleet"]
