WITH ev AS (
  SELECT
    `customer_id` AS __key,
    _event_time_us AS __et,
    _seq AS __seq,
    _ingested_at_us AS __ing,
    `amount` AS `v_amount`,
    `flag` AS `v_flag`,
    `item` AS `v_item`,
    `kind` AS `v_kind`,
    `price` AS `v_price`,
    `qty` AS `v_qty`,
    UNIX_MICROS(`seen`) AS `v_seen`
  FROM events
  WHERE
    NOT `customer_id` IS NULL
    AND (
      (
        (
          `kind` <> 'skip'
        ) OR (
          `kind` IS NULL
        )
      )
      AND (
        NOT (
          `item` IN ('bot')
        )
      )
    )
), q AS (
  SELECT
    __row,
    __key,
    __t,
    (
      (
        __t - 30000000
      ) - (
        (
          (
            __t - 30000000
          ) % 1000000
        ) + 1000000
      ) % 1000000
    ) AS __l0,
    (
      (
        __t - 10000000
      ) - (
        (
          (
            __t - 10000000
          ) % 5000000
        ) + 5000000
      ) % 5000000
    ) AS __l1,
    (
      (
        __t - 60000000
      ) - (
        (
          (
            __t - 60000000
          ) % 5000000
        ) + 5000000
      ) % 5000000
    ) AS __l2,
    (
      (
        __t - 300000000
      ) - (
        (
          (
            __t - 300000000
          ) % 5000000
        ) + 5000000
      ) % 5000000
    ) AS __l3,
    (
      (
        __t - 30000000
      ) - (
        (
          (
            __t - 30000000
          ) % 5000000
        ) + 5000000
      ) % 5000000
    ) AS __l4,
    (
      (
        __t - 60000000
      ) - (
        (
          (
            __t - 60000000
          ) % 10000000
        ) + 10000000
      ) % 10000000
    ) AS __l5,
    (
      (
        __t - 30000000
      ) - (
        (
          (
            __t - 30000000
          ) % 10000000
        ) + 10000000
      ) % 10000000
    ) AS __l6,
    (
      (
        __t - 120000000
      ) - (
        (
          (
            __t - 120000000
          ) % 10000000
        ) + 10000000
      ) % 10000000
    ) AS __l7,
    (
      (
        __t - 120000000
      ) - (
        (
          (
            __t - 120000000
          ) % 20000000
        ) + 20000000
      ) % 20000000
    ) AS __l8
  FROM entity_rows
), joined AS (
  SELECT
    q.*
    EXCEPT (__key),
    ev.*
    EXCEPT (__key)
  FROM q
  JOIN ev
    ON ev.__key = q.__key
    AND ev.__et <= q.__t
    AND ev.__et > LEAST(q.__l0, q.__l1, q.__l2, q.__l3, q.__l4, q.__l5, q.__l6, q.__l7, q.__l8, q.__t - 90000000 - 1)
), a AS (
  SELECT
    __row,
    COUNT(*) FILTER(WHERE
      __et > __l0) AS `n_exact_30s`,
    COUNT(*) FILTER(WHERE
      __et > __l1) AS `n_10s`,
    COUNT(*) FILTER(WHERE
      __et > __l2) AS `n_1m`,
    COUNT(*) FILTER(WHERE
      __et > __l3) AS `n_5m`,
    MAX_BY(
      `v_item`,
      IF(`v_item` IS NULL, NULL, (
        CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
      ))
    ) FILTER(WHERE
      __et > __l4 AND NOT `v_item` IS NULL) AS `last_item_30s`,
    MAX_BY(
      `v_seen`,
      IF(`v_seen` IS NULL, NULL, (
        CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
      ))
    ) FILTER(WHERE
      __et > __l4 AND NOT `v_seen` IS NULL) AS `last_seen_30s`,
    COUNT(*) FILTER(WHERE
      __et > __l5 AND NOT `v_qty` IS NULL) AS `qty_n_1m`,
    COALESCE(
      CAST(SUM(`v_qty`) FILTER(WHERE
        __et > __l5 AND NOT `v_qty` IS NULL) AS BIGINT),
      0
    ) AS `qty_1m`,
    COALESCE(SUM(`v_amount`) FILTER(WHERE
      __et > __l6 AND NOT `v_amount` IS NULL), 0.0) AS `amount_30s`,
    COALESCE(SUM(`v_amount`) FILTER(WHERE
      __et > __l7 AND NOT `v_amount` IS NULL), 0.0) AS `amount_2m`,
    CAST(SUM(`v_amount`) FILTER(WHERE
      __et > __l5 AND NOT `v_amount` IS NULL) AS DOUBLE) / NULLIF(COUNT(`v_amount`) FILTER(WHERE
      __et > __l5 AND NOT `v_amount` IS NULL), 0) AS `avg_1m`,
    CAST(SUM(`v_qty`) FILTER(WHERE
      __et > __l5 AND NOT `v_qty` IS NULL) AS DOUBLE) / NULLIF(COUNT(`v_qty`) FILTER(WHERE
      __et > __l5 AND NOT `v_qty` IS NULL), 0) AS `qty_avg_1m`,
    MIN(`v_price`) FILTER(WHERE
      __et > __l5 AND NOT `v_price` IS NULL) AS `low_1m`,
    MAX(`v_price`) FILTER(WHERE
      __et > __l5 AND NOT `v_price` IS NULL) AS `high_1m`,
    MAX(`v_item`) FILTER(WHERE
      __et > __l5 AND NOT `v_item` IS NULL) AS `top_item_1m`,
    COALESCE(
      SIZE(
        ARRAY_DISTINCT(COLLECT_LIST(`v_item`) FILTER(WHERE
          __et > __l5 AND NOT `v_item` IS NULL))
      ),
      0
    ) AS `items_1m`,
    COUNT(DISTINCT `v_price`) FILTER(WHERE
      __et > __l5 AND NOT `v_price` IS NULL) AS `prices_1m`,
    MAX_BY(
      `v_price`,
      IF(`v_price` IS NULL, NULL, (
        CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
      )),
      2
    ) FILTER(WHERE
      __et > __l5 AND NOT `v_price` IS NULL) AS `recent_prices_1m`,
    MIN(`v_seen`) FILTER(WHERE
      __et > __l8 AND NOT `v_seen` IS NULL) AS `first_seen_2m`,
    MAX_BY(
      `v_item`,
      IF(`v_item` IS NULL, NULL, (
        CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
      )),
      3
    ) FILTER(WHERE
      __et > __l8 AND NOT `v_item` IS NULL) AS `recent_2m`,
    MAX_BY(
      STRUCT(`v_kind` AS v0, `v_price` AS v1, `v_seen` AS v2, `v_flag` AS v3),
      (
        CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
      )
    ) FILTER(WHERE
      __et >= __t - 90000000) AS __latest
  FROM joined
  GROUP BY
    __row
)
SELECT
  q.__row,
  COALESCE(a.`n_exact_30s`, 0) AS `n_exact_30s`,
  COALESCE(a.`n_10s`, 0) AS `n_10s`,
  COALESCE(a.`n_1m`, 0) AS `n_1m`,
  COALESCE(a.`n_5m`, 0) AS `n_5m`,
  a.`last_item_30s`,
  a.`last_seen_30s`,
  COALESCE(a.`qty_n_1m`, 0) AS `qty_n_1m`,
  COALESCE(a.`qty_1m`, 0) AS `qty_1m`,
  COALESCE(a.`amount_30s`, 0.0) AS `amount_30s`,
  COALESCE(a.`amount_2m`, 0.0) AS `amount_2m`,
  a.`avg_1m`,
  a.`qty_avg_1m`,
  a.`low_1m`,
  a.`high_1m`,
  a.`top_item_1m`,
  COALESCE(a.`items_1m`, 0) AS `items_1m`,
  COALESCE(a.`prices_1m`, 0) AS `prices_1m`,
  COALESCE(a.`recent_prices_1m`, ARRAY()) AS `recent_prices_1m`,
  a.`first_seen_2m`,
  COALESCE(a.`recent_2m`, ARRAY()) AS `recent_2m`,
  a.__latest.v0 AS `kind_now`,
  a.__latest.v1 AS `price_now`,
  a.__latest.v2 AS `seen_now`,
  a.__latest.v3 AS `flag_now`
FROM entity_rows AS q
LEFT JOIN a
  ON a.__row = q.__row
