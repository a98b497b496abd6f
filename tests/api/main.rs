//! The one integration-test binary: every test drives a real server over HTTP on a random port, on SQLite
//! and (when CARESPACE_TEST_POSTGRES_URL is set) on PostgreSQL.

mod accounts;
mod backup;
mod browser;
mod durability;
mod gate;
mod health;
mod helpers;
mod interop;
mod matrix;
mod messages;
mod proxies;
mod rest;
mod scale_out;
mod search;
mod send_record;
mod smart;
mod smart_apps;
mod smtp;
mod us_core;
mod web;
