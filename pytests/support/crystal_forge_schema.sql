-- Crystal Forge's five build-queue tables as its own schema has them: the definitions in
-- the pg_dump of its public schema (usmcamp0811/crystal-forge), with the same names for
-- sequences, constraints, indexes and foreign keys, and its status catalogue as its
-- migrations insert it. Only what view_build_queue_status reads is here. One foreign key
-- is left out: commits.flake_id references flakes, a table the view does not read.
-- Runs in a fresh database (the deploy rehearsal creates one); everything goes to public.

create table public.derivation_statuses (
    id integer not null,
    name character varying(50) not null,
    description text,
    is_terminal boolean default false not null,
    is_success boolean default false not null,
    display_order integer not null,
    constraint derivation_statuses_pkey primary key (id),
    constraint derivation_statuses_name_key unique (name),
    constraint derivation_statuses_display_order_key unique (display_order)
);

create sequence public.tbl_commits_id_seq as integer;

create table public.commits (
    id integer default nextval('public.tbl_commits_id_seq'::regclass) not null,
    flake_id integer not null,
    git_commit_hash text not null,
    commit_timestamp timestamp with time zone not null,
    attempt_count integer default 0 not null,
    constraint tbl_commits_pkey primary key (id),
    constraint tbl_commits_flake_id_git_commit_hash_key unique (flake_id, git_commit_hash)
);

alter sequence public.tbl_commits_id_seq owned by public.commits.id;

create sequence public.derivations_id_seq as integer;

create table public.derivations (
    id integer default nextval('public.derivations_id_seq'::regclass) not null,
    commit_id integer,
    derivation_type text not null,
    derivation_name text not null,
    derivation_path text,
    scheduled_at timestamp with time zone default now(),
    completed_at timestamp with time zone,
    attempt_count integer default 0 not null,
    started_at timestamp with time zone,
    evaluation_duration_ms integer,
    error_message text,
    pname character varying(255),
    version character varying(100),
    status_id integer not null,
    derivation_target text,
    build_elapsed_seconds integer,
    build_current_target text,
    build_last_activity_seconds integer,
    build_last_heartbeat timestamp with time zone,
    cf_agent_enabled boolean default false,
    store_path text,
    constraint valid_derivation_type check (derivation_type = any (array['nixos'::text, 'package'::text])),
    constraint tbl_evaluation_targets_pkey primary key (id),
    constraint derivations_derivation_path_unique unique (derivation_path),
    constraint derivations_status_id_fkey foreign key (status_id)
        references public.derivation_statuses (id),
    constraint tbl_evaluation_targets_commit_id_fkey foreign key (commit_id)
        references public.commits (id) on delete cascade
);

alter sequence public.derivations_id_seq owned by public.derivations.id;

create unique index derivations_commit_name_type_unique
    on public.derivations using btree (coalesce(commit_id, '-1'::integer), derivation_name, derivation_type);
create unique index derivations_name_type_unique_null_commit
    on public.derivations using btree (derivation_name, derivation_type) where (commit_id is null);
create index idx_d_ready_cve
    on public.derivations using btree (completed_at, id)
    where ((derivation_path is not null) and (status_id = any (array[10, 11])));
create index idx_derivations_cf_agent_enabled on public.derivations using btree (cf_agent_enabled);
create index idx_derivations_derivation_type on public.derivations using btree (derivation_type);
create index idx_derivations_pname_version on public.derivations using btree (pname, version);
create index idx_derivations_status_id on public.derivations using btree (status_id);
create index idx_derivations_status_path
    on public.derivations using btree (status_id, derivation_path) where (derivation_path is not null);
create index idx_derivations_store_path
    on public.derivations using btree (store_path) where (store_path is not null);
create index idx_derivations_type_status on public.derivations using btree (derivation_type, status_id);

create table public.derivation_dependencies (
    derivation_id integer not null,
    depends_on_id integer not null,
    constraint derivation_dependencies_pkey primary key (derivation_id, depends_on_id),
    constraint derivation_dependencies_depends_on_id_fkey foreign key (depends_on_id)
        references public.derivations (id) on delete cascade,
    constraint derivation_dependencies_derivation_id_fkey foreign key (derivation_id)
        references public.derivations (id) on delete cascade
);

create index idx_derivation_dependencies_depends_on_id
    on public.derivation_dependencies using btree (depends_on_id);
create index idx_derivation_dependencies_derivation_id
    on public.derivation_dependencies using btree (derivation_id);

create sequence public.build_reservations_id_seq as integer;

create table public.build_reservations (
    id integer default nextval('public.build_reservations_id_seq'::regclass) not null,
    worker_id text not null,
    derivation_id integer not null,
    nixos_derivation_id integer,
    reserved_at timestamp with time zone default now() not null,
    heartbeat_at timestamp with time zone default now() not null,
    constraint build_reservations_pkey primary key (id),
    constraint build_reservations_derivation_unique unique (derivation_id),
    constraint build_reservations_derivation_id_fkey foreign key (derivation_id)
        references public.derivations (id) on delete cascade,
    constraint build_reservations_nixos_derivation_id_fkey foreign key (nixos_derivation_id)
        references public.derivations (id) on delete cascade
);

alter sequence public.build_reservations_id_seq owned by public.build_reservations.id;

create index idx_build_reservations_heartbeat on public.build_reservations using btree (heartbeat_at);
create index idx_build_reservations_nixos on public.build_reservations using btree (nixos_derivation_id);
create index idx_build_reservations_worker on public.build_reservations using btree (worker_id);

-- The catalogue as Crystal Forge's migrations fill it: 1-13 with the table, 14 later
-- with cache pushing. There is no 'scheduled'.
insert into public.derivation_statuses (id, name, description, is_terminal, is_success, display_order)
values
    (1, 'pending', 'Waiting to be processed', false, false, 10),
    (2, 'queued', 'Queued for processing', false, false, 20),
    (3, 'dry-run-pending', 'Waiting for dry run evaluation', false, false, 30),
    (4, 'dry-run-inprogress', 'Dry run evaluation in progress', false, false, 40),
    (5, 'dry-run-complete', 'Dry run evaluation completed', false, true, 50),
    (6, 'dry-run-failed', 'Dry run evaluation failed', true, false, 51),
    (7, 'build-pending', 'Waiting for build', false, false, 60),
    (8, 'build-inprogress', 'Build in progress', false, false, 70),
    (9, 'in-progress', 'Processing in progress', false, false, 75),
    (10, 'build-complete', 'Build completed successfully', false, true, 80),
    (11, 'complete', 'Processing completed successfully', true, true, 90),
    (12, 'build-failed', 'Build failed', true, false, 81),
    (13, 'failed', 'Processing failed', true, false, 91),
    (14, 'cache-pushed', 'Derivation has been pushed to cache', true, true, 100);
