//! omen's integration tests: one binary, so DataFusion and RocksDB link once.
//!
//! The harness is libtest-mimic: every test is registered below, and the
//! binary doubles as the child process of the crash test (see `crash`).

mod anomalies;
mod backup;
mod bulk;
mod cli;
mod crash;
mod directory;
mod engine;
mod foreign_keys;
mod hostile;
mod indexes;
mod integrity;
mod locks;
mod scan;
mod sequences;
mod server;
mod slt;
mod sql;
mod stress;
mod support;
mod transactional_ddl;
mod transfer;
mod wire_values;

use libtest_mimic::{Arguments, Trial};

/// Registers plain `fn()` tests of a module under `module::name`.
macro_rules! tests {
    ($module:ident: $($name:ident),* $(,)?) => {
        vec![$(Trial::test(concat!(stringify!($module), "::", stringify!($name)), || {
            $module::$name();
            Ok(())
        })),*]
    };
}

fn main() {
    if let Some(dir) = std::env::var_os(crash::CHILD_ENV) {
        crash::child(dir.as_ref());
        return;
    }
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    trials.extend(tests!(anomalies:
        dirty_write_read_committed,
        dirty_write_repeatable_read,
        writer_proceeds_when_the_blocker_rolls_back,
        aborted_read,
        intermediate_read,
        non_repeatable_read,
        circular_information_flow,
        observed_transaction_vanishes,
        predicate_many_preceders,
        lost_update_at_read_committed,
        lost_update_prevented_at_repeatable_read,
        lost_update_prevented_at_serializable,
        read_skew_allowed_at_read_committed,
        read_skew_prevented_at_repeatable_read,
        write_skew_allowed_at_repeatable_read,
        write_skew_prevented_at_serializable,
        predicate_write_skew_prevented_at_serializable,
        phantom_prevented_at_repeatable_read_and_serializable,
        phantom_insert_aborts_serializable_writer,
        concurrent_duplicate_insert,
        read_only_snapshot_is_consistent_while_writers_commit,
        serializable_read_only_never_aborts,
    ));
    trials.extend(tests!(bulk:
        bulk_loads_spill_merge_and_appear_at_one_commit,
        runs_in_key_order_are_written_without_a_merge,
        a_bulk_load_with_a_duplicate_or_bad_row_writes_nothing,
        duplicates_can_be_skipped_or_replaced_and_bad_rows_left_out,
        tables_with_indexes_or_foreign_keys_are_not_bulk_loaded,
        a_bulk_load_in_a_block_commits_the_new_table_with_its_rows,
        killing_an_import_leaves_nothing_or_everything,
    ));
    trials.extend(tests!(backup:
        online_backup_from_another_process_restores_one_consistent_commit,
        incremental_backups_share_unchanged_files,
        a_flipped_byte_fails_verification_and_restore_naming_the_file,
        restore_refuses_a_directory_with_files_or_one_in_use,
        retention_keeps_the_newest_and_removes_unused_files,
        point_in_time_recovery_restores_each_moment_of_a_history,
        point_in_time_recovery_reports_a_gap_in_the_archive,
        kill_during_backup_or_restore_leaves_the_next_run_working,
        busy_and_unreachable_have_their_own_exit_statuses,
        omen_backup_in_sql_is_for_superusers,
    ));
    trials.extend(tests!(hostile:
        half_open_connections_do_not_lock_out_clients,
        superusers_keep_reserved_connections,
        each_connection_has_its_own_process_id,
        unknown_roles_cannot_be_told_from_known_ones,
        huge_parameter_numbers_are_refused,
        copy_from_stdin_streams_and_stays_atomic,
        statements_past_the_memory_limit_fail_with_53200,
        sorts_past_the_memory_limit_spill_under_the_data_directory,
    ));
    trials.extend(tests!(scan:
        planning_and_explain_read_no_rows,
        limit_and_key_order_stop_scans_early,
        batches_resume_across_own_writes,
        a_snapshot_scan_ignores_commits_between_its_batches,
        scan_memory_does_not_grow_with_the_table,
        large_scans_run_in_partitions,
        results_are_read_as_the_client_takes_them,
        results_past_the_memory_limit_stream_to_clients,
        statistics_choose_join_sides_and_split_scans,
        cursors_read_as_they_fetch,
    ));
    trials.extend(tests!(wire_values:
        extreme_values_over_the_wire,
        random_values_round_trip_over_the_wire,
    ));
    trials.extend(tests!(foreign_keys:
        a_child_insert_waits_for_a_parent_delete_then_decides,
        a_parent_delete_waits_for_a_child_insert_then_decides,
        concurrent_children_and_parent_deletes_keep_every_reference,
        foreign_keys_survive_a_restart,
    ));
    trials.extend(tests!(transactional_ddl:
        uncommitted_ddl_is_invisible_to_other_sessions,
        writers_wait_for_a_transaction_that_altered_their_table,
        two_transactions_creating_one_name_commit_once,
        committed_ddl_survives_a_restart,
        relations_made_in_one_block_get_distinct_ids,
        two_changes_of_one_definition_never_both_commit,
    ));
    trials.extend(tests!(indexes:
        concurrent_inserts_of_one_unique_value_wait_then_decide,
        an_index_build_waits_for_writers_and_misses_no_row,
        old_snapshots_do_not_read_a_newer_index,
        indexes_survive_a_restart_and_ids_stay_apart,
        index_reads_answer_as_full_scans_do,
    ));
    trials.extend(tests!(locks:
        advisory_locks_exclude_and_wait,
        transaction_locks_end_with_their_transaction,
        lock_waits_end_on_timeouts_and_deadlocks,
        select_for_update_blocks_writers_until_commit,
        nowait_fails_and_skip_locked_skips,
        skip_locked_job_queue_hands_out_each_job_once,
        read_committed_rechecks_a_changed_row,
        row_lock_deadlock_fails_one_and_timeouts_end_waits,
        lock_views_show_who_waits_for_whom,
        concurrent_increments_are_never_lost,
        concurrent_upserts_neither_fail_nor_lose_counts,
        upsert_waits_for_a_concurrent_insert_of_its_key,
    ));
    trials.extend(tests!(sequences:
        serial_columns_number_rows,
        sequences_never_repeat_a_value,
        sequence_options_bound_and_cycle,
    ));
    trials.extend(tests!(integrity:
        table_ids_are_not_reused_after_alter_and_reopen,
        random_ddl_with_reopens_keeps_the_catalog,
        delete_rechecks_a_row_changed_while_it_waited,
        key_changing_update_rechecks_a_changed_row,
        row_locking_clauses_in_subqueries_are_refused,
        a_panicking_statement_is_undone_and_the_session_survives,
        one_alter_table_is_one_change,
        client_sizes_are_bounded,
        expression_defaults_are_evaluated_for_each_row,
        deleted_keys_leave_the_key_directory,
        check_constraints_hold_on_every_path_and_survive_reopening,
        renamed_tables_keep_their_sequences_across_reopening,
        a_million_rows_are_created_altered_reopened_and_queried,
        extreme_values_round_trip_or_fail_cleanly,
        long_identifiers_are_cut_to_63_bytes,
        sessions_set_their_own_memory_limit,
    ));
    trials.extend(tests!(engine:
        rows_and_tables_survive_reopen,
        timestamps_keep_rising_across_restarts,
        statements_are_atomic_and_errors_abort_the_transaction,
        duplicate_and_not_null_are_enforced,
        range_scans_follow_key_order,
        own_writes_are_visible_and_merged_in_scans,
        alter_table_keeps_old_rows_readable,
        ddl_errors,
        concurrent_drop_fails_writer,
        gc_removes_invisible_versions_only,
        gc_respects_retention_window,
        row_ids_stay_unique_across_reopen,
    ));
    trials.extend(tests!(directory:
        every_directory_gives_the_same_answers,
        directory_is_rebuilt_on_open_and_serves_old_snapshots,
        opening_reads_no_rows_and_answers_stay_right_while_directories_build,
    ));
    trials.extend(tests!(stress: serializable_transfers_keep_the_total));
    trials.extend(tests!(crash: acknowledged_commits_survive_sigkill));
    trials.extend(tests!(sql:
        definitions_omen_cannot_keep_are_refused,
        fast_path_gives_the_general_paths_results_and_errors,
        prepared_fast_path_gives_the_general_paths_results_and_errors,
        prepared_statements_follow_table_changes,
        repeated_text_is_kept_parsed_and_follows_table_changes,
        key_filters_are_pushed_down_exactly,
        several_statements_in_one_text,
        concurrent_sql_transactions_conflict_with_40001,
        read_committed_updates_lose_no_increment,
        statement_timeout_cancels_long_queries,
        set_returning_functions_name_their_column,
    ));
    trials.extend(tests!(cli:
        commands_run_in_order_and_rows_go_to_stdout,
        file_and_stdin_scripts,
        data_written_by_one_process_is_read_by_another,
        errors_stop_the_script_and_exit_non_zero,
        output_formats,
        data_dir_flag_and_environment,
        version_names_the_build,
        threads_and_memory_limit_flags,
        backslash_copy_reads_and_writes_files,
    ));
    trials.extend(tests!(transfer:
        import_creates_a_typed_table_and_export_gives_it_back,
        a_bad_row_stops_the_import_and_changes_nothing,
        import_from_stdin_into_named_columns_and_dry_run,
        gzip_files_export_and_import,
        parquet_files_export_and_import,
        import_leaves_out_bad_rows_and_resolves_duplicate_keys,
    ));
    trials.extend(tests!(server:
        simple_protocol_and_transaction_status,
        extended_protocol_parameters_and_binary_results,
        concurrent_transactions_are_isolated,
        scram_authentication_and_roles,
        refuses_to_listen_beyond_loopback_without_authentication,
        psql_over_tls_with_scram,
        tls_certificate_files_and_direct_negotiation,
        psql_script_stops_on_error,
        psql_describes_tables_and_roles,
        bad_clients_do_not_disturb_others,
        shutdown_is_clean_and_data_survives,
        connection_limit,
        row_locks_over_the_wire,
        foreign_keys_and_ddl_over_the_wire,
        prepared_parameters_over_the_wire_match_the_general_path,
        tpcb_clients_never_fail_at_read_committed,
        cancel_request_stops_a_running_query,
        psycopg_driver,
        sqlalchemy_and_alembic,
        idle_transactions_time_out,
    ));
    trials.extend(slt::trials());
    libtest_mimic::run(&args, trials).exit();
}
