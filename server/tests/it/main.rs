//! Black-box tests: the real server on an ephemeral port, real WebSockets.
//! One binary, a module per feature.

mod common;

mod admin_api;
mod bad_input;
mod calendar;
mod clients;
mod cluster;
mod coalescing;
mod contract;
mod crisis;
mod http_limits;
mod languages;
mod logs;
mod messages;
mod moderation;
mod participation;
mod process;
mod rooms;
mod safety;
mod scenarios;
mod session;
mod session_tools;
mod slow_consumer;
mod tokens;
mod web_client;
mod webhook;
