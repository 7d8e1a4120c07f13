/* The list of tests: X(name, flags). H_SLOW marks tests that
 * OMEN_TEST_SKIP_SLOW=1 skips (big stores, many threads). */
#ifndef OMEN_TESTS_H
#define OMEN_TESTS_H

#define OMEN_TESTS(X)                                  \
    /* test_api.c */                                   \
    X(null_open_recover, 0)                            \
    X(null_writers, 0)                                 \
    X(null_readers, 0)                                 \
    X(close_null_is_noop, 0)                           \
    X(double_close_is_refused, 0)                      \
    X(options_default_null_does_not_crash, 0)          \
    X(status_values_and_names, 0)                      \
    X(version, 0)                                      \
    X(last_error_per_thread, 0)                        \
    /* test_options.c */                               \
    X(options_default_values, 0)                       \
    X(options_invalid, 0)                              \
    X(options_valid_pq_settings, 0)                    \
    X(open_missing_store, 0)                           \
    X(create_missing_parent, 0)                        \
    X(create_in_existing_empty_dir, 0)                 \
    X(create_flag_on_existing_store_keeps_data, 0)     \
    X(reopen_dimension_and_options, 0)                 \
    X(struct_size_too_small_other_structs, 0)          \
    X(stats_older_struct_size, 0)                      \
    X(failed_create_leaves_no_trace, 0)                \
    X(reopen_ignores_creation_settings, 0)             \
    X(huge_pages_flag_round_trip, 0)                   \
    /* test_batch.c */                                 \
    X(put_rejects_non_finite_atomically, 0)            \
    X(put_rejects_bad_ids_atomically, 0)               \
    X(id_length_limits, 0)                             \
    X(binary_ids, 0)                                   \
    X(arrow_slice_offsets, 0)                          \
    X(empty_batches, 0)                                \
    X(upsert_and_accounting, 0)                        \
    X(last_occurrence_wins, 0)                         \
    X(get_bit_exact, 0)                                \
    X(get_batch_missing_rows, 0)                       \
    X(big_batch_round_trip, 0)                         \
    X(contains_agrees_with_get, 0)                     \
    /* test_durability.c */                            \
    X(checkpoint_sequence, 0)                          \
    X(close_checkpoints, 0)                            \
    X(reopen_exact_data, 0)                            \
    X(sync_writes, 0)                                  \
    X(crash_right_after_create, 0)                     \
    X(crash_after_checkpoint, 0)                       \
    X(crash_then_recover, 0)                           \
    X(crash_with_sync_writes, 0)                       \
    X(close_discard_keeps_last_checkpoint, 0)          \
    /* test_crash.c */                                 \
    X(crash_during_create, 0)                          \
    X(crash_during_checkpoints, 0)                     \
    X(crash_during_checkpoints_recover, 0)             \
    X(crash_during_sync_writes, 0)                     \
    X(crash_during_compaction, 0)                      \
    /* test_damage.c */                                \
    X(damaged_files_never_crash, 0)                    \
    X(io_error_when_files_cannot_grow, 0)              \
    X(damaged_last_commit_is_not_silently_skipped, 0)  \
    X(recover_report, 0)                               \
    X(recover_detects_flipped_byte, 0)                 \
    X(flipped_byte_never_returned_as_data, 0)          \
    X(damaged_index_is_reported_and_rebuilt, 0)        \
    /* test_locking.c */                               \
    X(read_only_rejects_writes, 0)                     \
    X(two_read_only_opens_share, 0)                    \
    X(read_only_shared_across_processes, 0)            \
    X(second_writer_same_process, 0)                   \
    X(second_writer_other_process, 0)                  \
    X(second_writer_forked_after_open, 0)              \
    X(lock_released_when_writer_dies, 0)               \
    X(no_fd_leak_on_open_close, 0)                     \
    X(close_discard_read_only_and_lock, 0)             \
    /* test_search.c */                                \
    X(search_l2_exact, 0)                              \
    X(search_ip_exact, 0)                              \
    X(search_cosine_exact, 0)                          \
    X(search_after_reopen, 0)                          \
    X(search_params_and_batch, 0)                      \
    X(search_rejects_non_finite_query, 0)              \
    X(search_empty_store_and_deleted, 0)               \
    X(key_id_stability, 0)                             \
    X(key_id_pointer_survives_growth, 0)               \
    X(search_filters, 0)                               \
    X(search_ids, 0)                                   \
    X(search_query_threads, 0)                         \
    /* test_stats.c */                                 \
    X(stats_fields, 0)                                 \
    X(compact, 0)                                      \
    X(size_100_vectors, 0)                             \
    X(size_100k_vectors, H_SLOW)                       \
    /* test_threads.c */                               \
    X(threads_readers_and_writer, 0)                   \
    X(threads_readers_during_compaction, 0)            \
    /* test_pq.c */                                    \
    X(pq_train_with_progress, 0)                       \
    X(pq_search, 0)                                    \
    X(pq_automatic_training, 0)                        \
    X(pq_drop_raw, 0)                                  \
    X(pq_huge_components_train_and_reopen, 0)          \
    /* test_misuse.c */                                \
    X(fork_child_close_leaves_parent_intact, 0)        \
    X(fork_child_searches_on_workers_of_its_own, 0)    \
    X(write_calls_from_progress_callback, 0)           \
    X(stale_key_after_compact, 0)                      \
    X(keys_survive_automatic_drop_raw_training, 0)     \
    X(get_refuses_bad_id_lengths, 0)                   \
    X(thread_counts_are_bounded, 0)                    \
    X(unreadable_store_is_io_error, 0)                 \
    /* test_queries.c */                               \
    X(cursor_snapshot, 0)                              \
    X(cursor_buffers, 0)                               \
    X(cursor_outlived_store_and_fork, 0)               \
    X(queries_drop_raw, 0)                             \
    X(search_by_id, 0)                                 \
    X(range_search, 0)                                 \
    /* test_ivf.c */                                   \
    X(ivf_search_params, 0)                            \
    X(ivf_options_layouts, 0)                          \
    X(ivf_drop_raw, 0)                                 \
    X(ivf_search_plan, 0)                              \
    X(ivf_calibrate, 0)

#endif
