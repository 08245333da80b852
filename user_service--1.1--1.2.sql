/* user_service--1.1--1.2.sql: import_user batch kind, stats view */

-- complain if script is sourced in psql, rather than through ALTER EXTENSION
\echo Use "ALTER EXTENSION user_service UPDATE TO '1.2'" to load this file. \quit
