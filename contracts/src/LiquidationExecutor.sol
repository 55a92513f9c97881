// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IERC20Min {
    function balanceOf(address account) external view returns (uint256);
    function decimals() external view returns (uint8);
}

interface IWETH9 {
    function withdraw(uint256 amount) external;
}

/// Aave V3 Pool: the flash-loan source.
interface IFlashLoanSimplePool {
    function flashLoanSimple(
        address receiverAddress,
        address asset,
        uint256 amount,
        bytes calldata params,
        uint16 referralCode
    ) external;
}

/// Aave V3 Pool and Aave V2 LendingPool share this signature.
interface ILiquidationPool {
    function liquidationCall(
        address collateralAsset,
        address debtAsset,
        address user,
        uint256 debtToCover,
        bool receiveAToken
    ) external;
}

/// Aave V3 AaveOracle and Aave V2 AaveOracle: both price every reserve in one base currency.
interface IAaveOracle {
    function getAssetPrice(address asset) external view returns (uint256);
}

/// Uniswap v3-periphery SwapRouter.
interface IUniswapV3Router {
    struct ExactInputParams {
        bytes path;
        address recipient;
        uint256 deadline;
        uint256 amountIn;
        uint256 amountOutMinimum;
    }

    function exactInput(ExactInputParams calldata params) external payable returns (uint256 amountOut);
}

/// Uniswap V2 Router02.
interface IUniswapV2Router {
    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external returns (uint256[] memory amounts);
}

/// Balancer V2 Vault: swaps (GIVEN_IN only here) and flash loans.
interface IBalancerVault {
    enum SwapKind {
        GIVEN_IN,
        GIVEN_OUT
    }

    struct SingleSwap {
        bytes32 poolId;
        SwapKind kind;
        address assetIn;
        address assetOut;
        uint256 amount;
        bytes userData;
    }

    struct BatchSwapStep {
        bytes32 poolId;
        uint256 assetInIndex;
        uint256 assetOutIndex;
        uint256 amount;
        bytes userData;
    }

    struct FundManagement {
        address sender;
        bool fromInternalBalance;
        address payable recipient;
        bool toInternalBalance;
    }

    function swap(SingleSwap memory singleSwap, FundManagement memory funds, uint256 limit, uint256 deadline)
        external
        payable
        returns (uint256 amountCalculated);

    function batchSwap(
        SwapKind kind,
        BatchSwapStep[] memory swaps,
        address[] memory assets,
        FundManagement memory funds,
        int256[] memory limits,
        uint256 deadline
    ) external payable returns (int256[] memory assetDeltas);

    function flashLoan(address recipient, address[] memory tokens, uint256[] memory amounts, bytes memory userData)
        external;
}

/// @title LiquidationExecutor: flash loan -> liquidationCall -> sell the collateral -> repay -> pay; and
///        flash loan -> sell along a cycle back into the borrowed token -> repay -> pay (arbitrage).
/// @notice One call per opportunity (`liquidate`, `liquidateSubsidized`, `arbitrage`), or several in one
///         transaction (`batch`, each item isolated).
///         Liquidation: the debt asset is flash-borrowed from the Aave V3 Pool (`flashLoanSimple`; the Pool
///         has no reentrancy lock, so `liquidationCall` on the same Pool, or on an Aave V2 LendingPool,
///         works inside `executeOperation`). ALL the seized collateral is sold into the debt asset on one
///         explicit route (amountOutMinimum = `minOut`), the sale must clear the oracle floor, the loan
///         plus premium is repaid, and what is left is the gross profit G (debt-asset units).
///         Subsidized liquidation (`liquidateSubsidized`, a protocol keeper's loss-making sale): the same,
///         except that when the sale returns less than the debt repaid plus the premium, the shortfall
///         (debt-asset units) is pulled from the OWNER (`transferFrom(owner, this, shortfall)`, within the
///         allowance the owner gave this contract for that token, and at most the call's `maxSubsidy`,
///         else SubsidyTooHigh) before the loan is repaid; G is then 0: no profit, the builder is paid
///         nothing, and `Subsidized` is emitted after `Liquidated`. The oracle floor still applies: a
///         subsidy never pays for a sale into a manipulated pool.
///         Arbitrage: `amount` of `token` is flash-borrowed from the Balancer V2 Vault (`flashLoan`,
///         repaid by transfer, fee as the Vault's fee collector sets it) or the Aave V3 Pool, sold along
///         a route that starts and ends at `token` (total output >= `minOut`), the loan plus fee is
///         repaid, and what is left is G (`token` units). The Vault is locked during its own flash loan,
///         so a route that swaps on Balancer must borrow from Aave (refused with BadPath otherwise).
///         Both: the builder's share is S = G * coinbaseBps / 10000; the owner's profit is P = G - S and
///         must be >= minProfit, else the call reverts (and nobody is paid). Only after that check is S
///         converted to ETH (unwrapped if the token is WETH, otherwise swapped to WETH on a Uniswap V3
///         path with amountOutMinimum = `coinbaseMinOut` and unwrapped) and sent to block.coinbase; P and
///         any other balance go to the owner, so the contract ends every call holding nothing.
/// @dev Trust model. The owner (two-step rotation) chooses everything that moves value: the flash
///      sources (Aave V3 Pool, Balancer V2 Vault), the routers and WETH (immutable), the lending pools
///      that may be called and approved (allowlist, each with its Aave price oracle), the largest builder
///      share (`maxCoinbaseBps`) and the largest loss against the oracle on a liquidation's collateral
///      sale (`maxSlippageBps`). Operators (hot keys that only pay gas) choose the opportunity within
///      those bounds; a leaked operator key cannot give the profit away to a builder, sell a liquidation's
///      collateral into a pool it manipulated, or get an approval for its own contract (tokens are only
///      ever approved to the routers, the Vault, the flash pool and allowlisted lending pools). What a
///      subsidized liquidation may take from the owner is bounded by the owner's own ERC-20 allowance to
///      this contract (zero: no subsidy at all) and by each call's `maxSubsidy`, and only for a sale that
///      clears the oracle floor. An
///      arbitrage has no oracle floor: its protection is the cycle itself (it must return more of the
///      borrowed token than was borrowed plus fee, plus minProfit, or it reverts), so an operator can at
///      worst burn gas on it, never the owner's funds (the contract holds none between calls).
///      Callbacks: `executeOperation` only from the Aave Pool for a loan this contract initiated, and
///      `receiveFlashLoan` only from the Balancer Vault, each only while this contract waits for exactly
///      that callback (a one-shot transient flag set just before the loan) and only for the token and
///      amount it asked for.
///      Routes (`Venue`): Uniswap V3 `token (20) | fee (3) | token (20) ...` (SwapRouter exactInput),
///      Uniswap V2 `token (20) | token (20) ...` (Router02), Balancer V2 `token (20) | poolId (32) |
///      token (20) ...` (Vault `swap` for one hop, `batchSwap` GIVEN_IN for several), and Mixed:
///      `abi.encode(Leg[])`, the input split over legs by bps (the last leg takes the remainder), each leg
///      a chain of V3 / V2 / Balancer hops, the legs' outputs summed and checked against minOut. Every
///      route must run from the input token to the output token (checked before any loan). Allowances
///      are exact and set back to zero after each use.
///      Transient state (EIP-1153) is reset at the end of every call that sets it: the build script
///      derives the pre-Cancun `LiquidationExecutorLegacy` from this source by turning the `transient`
///      variables into ordinary storage, which is correct only because of those resets.
contract LiquidationExecutor {
    enum Venue {
        Invalid,
        UniswapV3,
        UniswapV2,
        BalancerV2,
        Mixed
    }

    enum FlashSource {
        Invalid,
        BalancerVault,
        AaveV3
    }

    struct Params {
        address lendingPool; // an allowlisted Aave V3 Pool or Aave V2 LendingPool to liquidate on
        address collateral;
        address debt; // also the flash-borrowed asset
        address user;
        uint256 debtToCover; // flash-borrowed; the pool may take less (close factor, collateral cap)
        uint256 minProfit; // owner's profit after premium and builder share, in debt-asset units
        Venue venue; // where the collateral is sold (any route kind)
        bytes path; // route collateral -> debt
        uint16 coinbaseBps; // builder's share of the gross profit, <= maxCoinbaseBps
        bytes coinbasePath; // packed Uniswap V3 route debt -> WETH (empty when debt is WETH or bps is 0)
        uint64 maxBlock; // the call reverts in any later block
        uint256 minOut; // amountOutMinimum of the collateral sale (the keeper's quote minus a tolerance)
        uint256 coinbaseMinOut; // amountOutMinimum of the builder-payment conversion debt -> WETH
    }

    struct ArbParams {
        FlashSource source; // Balancer V2 Vault flashLoan or Aave V3 flashLoanSimple
        address token; // borrowed; the route starts and ends here; profit is paid in it
        uint256 amount; // borrowed and sold along the route
        Venue venue; // route kind (any of the four)
        bytes path; // the cycle token -> ... -> token
        uint256 minOut; // the route's total output minimum
        uint256 minProfit; // owner's profit after the flash fee and the builder share, token units
        uint16 coinbaseBps; // <= maxCoinbaseBps
        bytes coinbasePath; // Uniswap V3 route token -> WETH (empty when token is WETH or bps is 0)
        uint256 coinbaseMinOut;
        uint64 maxBlock;
        bytes32 tag; // the keeper's opportunity tag, emitted in the event
    }

    /// One leg of a Mixed route: `bps` of the route's input, sold along `hops` in order.
    struct Leg {
        uint16 bps;
        Hop[] hops;
    }

    /// One hop of a leg: a UniswapV3, UniswapV2 or BalancerV2 path.
    struct Hop {
        Venue venue;
        bytes path;
    }

    uint256 private constant BPS = 10_000;
    // Which flash-loan callback this contract is waiting for (tCallback).
    uint8 private constant CB_NONE = 0;
    uint8 private constant CB_AAVE_LIQUIDATION = 1;
    uint8 private constant CB_AAVE_ARBITRAGE = 2;
    uint8 private constant CB_BALANCER_ARBITRAGE = 3;
    uint8 private constant CB_AAVE_SUBSIDIZED = 4;

    IFlashLoanSimplePool public immutable flashPool;
    IUniswapV3Router public immutable routerV3;
    IUniswapV2Router public immutable routerV2;
    address public immutable weth;
    IBalancerVault public immutable balancerVault;

    // owner and both bounds share one storage slot (one cold read per liquidation).
    address public owner;
    uint16 public maxCoinbaseBps;
    uint16 public maxSlippageBps;
    address public pendingOwner;

    mapping(address => bool) public isOperator;
    /// Allowlisted lending pool -> its Aave price oracle (zero: not allowed).
    mapping(address => address) public oracleOf;

    // Per-call state, transient (EIP-1153), reset at the end of the call that sets it.
    bool private transient inFlight;
    bool private transient inBatch;
    uint8 private transient tCallback;
    uint256 private transient tRepaid;
    uint256 private transient tSeized;
    uint256 private transient tReceived;
    uint256 private transient tPremium;
    uint256 private transient tMaxSubsidy;
    uint256 private transient tSubsidy;

    event OperatorSet(address indexed operator, bool enabled);
    event PoolSet(address indexed pool, address oracle);
    event MaxCoinbaseBpsSet(uint16 maxCoinbaseBps);
    event MaxSlippageBpsSet(uint16 maxSlippageBps);
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// One failed item of a `batch` (its state changes were rolled back); reason: its revert data.
    event BatchItemFailed(uint256 indexed index, bytes reason);
    /// profit: paid to the owner, in the debt asset; coinbasePaid: wei sent to block.coinbase.
    event Liquidated(
        address indexed lendingPool,
        address indexed user,
        address indexed collateral,
        address debt,
        uint256 debtRepaid,
        uint256 collateralSeized,
        uint256 swapOut,
        uint256 flashPremium,
        uint256 profit,
        uint256 coinbasePaid
    );
    /// A `liquidateSubsidized` call whose sale did not repay the loan: the owner paid `shortfall` (debt-asset
    /// units). Emitted right after that call's `Liquidated` (whose profit and coinbasePaid are then 0).
    event Subsidized(address indexed lendingPool, address indexed user, address debt, uint256 shortfall);
    /// amountIn: borrowed and sold; amountOut: what the route returned; profit: paid to the owner in
    /// `token`; coinbasePaid: wei sent to block.coinbase.
    event Arbitraged(
        bytes32 indexed tag,
        address indexed token,
        uint256 amountIn,
        uint256 amountOut,
        uint256 flashFee,
        uint256 profit,
        uint256 coinbasePaid
    );

    error NotOwner();
    error NotOperator();
    error NotPendingOwner();
    error Reentered();
    error Expired(uint256 maxBlock);
    error BadParams();
    error BadPath();
    error UnauthorizedCallback();
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error InsufficientOutput(uint256 received, uint256 minOut);
    error TokenCallFailed(address token);
    error EthTransferFailed(address to);
    error NotWeth();
    error CoinbaseShareTooHigh(uint256 coinbaseBps, uint256 maxCoinbaseBps);
    error PoolNotAllowed(address pool);
    error BadOraclePrice(address asset);
    error SlippageTooHigh(uint256 received, uint256 floor);
    error NotBatchable(uint256 index);
    error AllItemsFailed(bytes firstReason);
    error SubsidyTooHigh(uint256 shortfall, uint256 maxSubsidy);

    /// `pools[i]` is allowlisted with its price oracle `oracles[i]`. `balancerVault_` may be zero: then
    /// Balancer routes (BadPath) and Balancer flash loans (BadParams) are refused.
    constructor(
        address owner_,
        address operator,
        address flashPool_,
        address routerV3_,
        address routerV2_,
        address weth_,
        uint16 maxCoinbaseBps_,
        uint16 maxSlippageBps_,
        address[] memory pools,
        address[] memory oracles,
        address balancerVault_
    ) {
        if (owner_ == address(0) || flashPool_ == address(0) || weth_ == address(0)) revert BadParams();
        if (maxCoinbaseBps_ > BPS || maxSlippageBps_ > BPS || pools.length != oracles.length) revert BadParams();
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
        flashPool = IFlashLoanSimplePool(flashPool_);
        routerV3 = IUniswapV3Router(routerV3_);
        routerV2 = IUniswapV2Router(routerV2_);
        weth = weth_;
        balancerVault = IBalancerVault(balancerVault_);
        maxCoinbaseBps = maxCoinbaseBps_;
        emit MaxCoinbaseBpsSet(maxCoinbaseBps_);
        maxSlippageBps = maxSlippageBps_;
        emit MaxSlippageBpsSet(maxSlippageBps_);
        for (uint256 i = 0; i < pools.length; ++i) {
            _setPool(pools[i], oracles[i]);
        }
        if (operator != address(0)) {
            isOperator[operator] = true;
            emit OperatorSet(operator, true);
        }
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// Only WETH sends ETH here (when we unwrap).
    receive() external payable {
        if (msg.sender != weth) revert NotWeth();
    }

    // --- owner ---------------------------------------------------------------------------------------

    function setOperator(address operator, bool enabled) external onlyOwner {
        isOperator[operator] = enabled;
        emit OperatorSet(operator, enabled);
    }

    /// Allows `pool` as a liquidationCall target priced by `oracle`; a zero oracle removes the pool.
    function setPool(address pool, address oracle) external onlyOwner {
        _setPool(pool, oracle);
    }

    function setMaxCoinbaseBps(uint16 bps) external onlyOwner {
        if (bps > BPS) revert BadParams();
        maxCoinbaseBps = bps;
        emit MaxCoinbaseBpsSet(bps);
    }

    function setMaxSlippageBps(uint16 bps) external onlyOwner {
        if (bps > BPS) revert BadParams();
        maxSlippageBps = bps;
        emit MaxSlippageBpsSet(bps);
    }

    /// Step one of a rotation: the current owner keeps full control until `newOwner` accepts.
    /// address(0) cancels a pending transfer.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    function acceptOwnership() external {
        address newOwner = pendingOwner;
        if (msg.sender != newOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
        pendingOwner = address(0);
    }

    /// Rescue: sends this contract's whole balance of `token` to the owner.
    function sweep(address token) external onlyOwner {
        _sweepAll(token);
    }

    function sweepETH() external onlyOwner {
        _sendEth(owner, address(this).balance);
    }

    // --- operators -----------------------------------------------------------------------------------

    /// Runs several calls of this contract's own batchable entry points (`liquidate`, `liquidateSubsidized`,
    /// `arbitrage`) in
    /// one transaction, each as a self-call so that a failing item (liquidated by a competitor,
    /// unprofitable, slippage) reverts only itself. ok[i]/results[i]: the item's success and return data
    /// (or revert data). If no item succeeds the whole call reverts (AllItemsFailed with the first item's
    /// revert data), so a bundle that would only burn gas is dropped by the builder.
    function batch(bytes[] calldata calls) external returns (bool[] memory ok, bytes[] memory results) {
        if (msg.sender != owner && !isOperator[msg.sender]) revert NotOperator();
        if (inBatch || inFlight) revert Reentered();
        uint256 n = calls.length;
        if (n == 0) revert BadParams();
        inBatch = true;
        ok = new bool[](n);
        results = new bytes[](n);
        bool anyOk;
        for (uint256 i = 0; i < n; ++i) {
            bytes calldata item = calls[i];
            if (item.length < 4 || !_batchable(bytes4(item[:4]))) revert NotBatchable(i);
            (bool success, bytes memory ret) = address(this).call(item);
            ok[i] = success;
            results[i] = ret;
            if (success) anyOk = true;
            else emit BatchItemFailed(i, ret);
        }
        if (!anyOk) revert AllItemsFailed(results[0]);
        inBatch = false;
    }

    /// Runs one liquidation; returns the owner's profit (debt-asset units) and the builder's payment (wei).
    function liquidate(Params calldata p) external returns (uint256 profit, uint256 coinbasePaid) {
        (profit, coinbasePaid) = _liquidate(p, CB_AAVE_LIQUIDATION);
    }

    /// `liquidate`, except that a sale returning less than the debt repaid plus the flash premium is made
    /// up by the owner: the shortfall (debt-asset units, at most `maxSubsidy`, else SubsidyTooHigh) is
    /// pulled with `transferFrom(owner, this, shortfall)` (the owner approves this contract for the debt
    /// token beforehand: that allowance is the owner's cap). Returns the owner's profit and the builder's
    /// payment (both 0 when subsidized: no share of a loss) and the subsidy pulled (0 when the sale
    /// repaid the loan: then it is a plain liquidation, profit check and builder share included).
    function liquidateSubsidized(Params calldata p, uint256 maxSubsidy)
        external
        returns (uint256 profit, uint256 coinbasePaid, uint256 subsidy)
    {
        tMaxSubsidy = maxSubsidy; // a reentrant or unauthorized call reverts in _liquidate, undoing this
        (profit, coinbasePaid) = _liquidate(p, CB_AAVE_SUBSIDIZED);
        subsidy = tSubsidy;
        if (subsidy > 0) emit Subsidized(p.lendingPool, p.user, p.debt, subsidy);
        (tMaxSubsidy, tSubsidy) = (0, 0);
    }

    /// The liquidation both entry points run; `callback` tells executeOperation whether a shortfall may be
    /// pulled from the owner.
    function _liquidate(Params calldata p, uint8 callback) private returns (uint256 profit, uint256 coinbasePaid) {
        // Checks. The contract itself is a caller only for a batch item, while the batch runs.
        _checkCaller();
        if (block.number > p.maxBlock) revert Expired(p.maxBlock);
        if (p.coinbaseBps > maxCoinbaseBps) revert CoinbaseShareTooHigh(p.coinbaseBps, maxCoinbaseBps);
        if (p.collateral == p.debt || p.debtToCover == 0) revert BadParams();
        if (oracleOf[p.lendingPool] == address(0)) revert PoolNotAllowed(p.lendingPool);
        _checkRoute(p.venue, p.path, p.collateral, p.debt);
        if (p.coinbaseBps > 0 && p.debt != weth) _checkRoute(Venue.UniswapV3, p.coinbasePath, p.debt, weth);

        // Effects
        inFlight = true;
        tCallback = callback;

        // Interactions: the loan; executeOperation liquidates, sells and approves the repayment.
        uint256 debtBefore = _balance(p.debt);
        flashPool.flashLoanSimple(address(this), p.debt, p.debtToCover, abi.encode(p), 0);
        _approve(p.debt, address(flashPool), 0); // the pool pulled amount + premium; no allowance remains

        (profit, coinbasePaid) =
            _settle(p.debt, debtBefore, p.coinbaseBps, p.coinbasePath, p.coinbaseMinOut, p.minProfit);
        _sweepAll(p.collateral);
        emit Liquidated(
            p.lendingPool, p.user, p.collateral, p.debt, tRepaid, tSeized, tReceived, tPremium, profit,
            coinbasePaid
        );
        (tRepaid, tSeized, tReceived, tPremium) = (0, 0, 0, 0);
        tCallback = CB_NONE;
        inFlight = false;
    }

    /// Runs one flash-loan arbitrage along a cycle `token` -> ... -> `token`; returns the owner's profit
    /// (`token` units) and the builder's payment (wei).
    function arbitrage(ArbParams calldata p) external returns (uint256 profit, uint256 coinbasePaid) {
        _checkCaller();
        if (block.number > p.maxBlock) revert Expired(p.maxBlock);
        if (p.coinbaseBps > maxCoinbaseBps) revert CoinbaseShareTooHigh(p.coinbaseBps, maxCoinbaseBps);
        if (p.amount == 0) revert BadParams();
        bool viaBalancer = _checkRoute(p.venue, p.path, p.token, p.token);
        if (p.coinbaseBps > 0 && p.token != weth) _checkRoute(Venue.UniswapV3, p.coinbasePath, p.token, weth);

        inFlight = true;
        uint256 before = _balance(p.token);
        if (p.source == FlashSource.BalancerVault) {
            if (address(balancerVault) == address(0)) revert BadParams();
            if (viaBalancer) revert BadPath(); // the Vault is locked during its own flash loan
            address[] memory tokens = new address[](1);
            uint256[] memory amounts = new uint256[](1);
            tokens[0] = p.token;
            amounts[0] = p.amount;
            tCallback = CB_BALANCER_ARBITRAGE;
            // receiveFlashLoan sells and transfers amount + fee back.
            balancerVault.flashLoan(address(this), tokens, amounts, abi.encode(p));
        } else if (p.source == FlashSource.AaveV3) {
            tCallback = CB_AAVE_ARBITRAGE;
            // executeOperation sells and approves amount + premium.
            flashPool.flashLoanSimple(address(this), p.token, p.amount, abi.encode(p), 0);
            _approve(p.token, address(flashPool), 0);
        } else {
            revert BadParams();
        }

        (profit, coinbasePaid) =
            _settle(p.token, before, p.coinbaseBps, p.coinbasePath, p.coinbaseMinOut, p.minProfit);
        emit Arbitraged(p.tag, p.token, p.amount, tReceived, tPremium, profit, coinbasePaid);
        (tReceived, tPremium) = (0, 0);
        tCallback = CB_NONE;
        inFlight = false;
    }

    /// Aave flash-loan callback. Only the flash pool, for a loan this contract took, during `liquidate`,
    /// `liquidateSubsidized` or `arbitrage` (whichever set the one-shot callback flag).
    function executeOperation(
        address asset,
        uint256 amount,
        uint256 premium,
        address initiator,
        bytes calldata data
    ) external returns (bool) {
        if (msg.sender != address(flashPool) || initiator != address(this) || !inFlight) {
            revert UnauthorizedCallback();
        }
        uint8 expected = tCallback;
        tCallback = CB_NONE;
        tPremium = premium;
        if (expected == CB_AAVE_LIQUIDATION || expected == CB_AAVE_SUBSIDIZED) {
            Params memory p = abi.decode(data, (Params));
            if (asset != p.debt || amount != p.debtToCover) revert UnauthorizedCallback();
            _liquidateAndSell(p, data);
            if (expected == CB_AAVE_SUBSIDIZED) _pullShortfall(asset, premium);
        } else if (expected == CB_AAVE_ARBITRAGE) {
            ArbParams calldata a = _arbParamsAt(data);
            if (asset != a.token || amount != a.amount) revert UnauthorizedCallback();
            _sellCycle(a, premium);
        } else {
            revert UnauthorizedCallback();
        }
        _approve(asset, msg.sender, amount + premium); // the pool pulls exactly this after we return
        return true;
    }

    /// Balancer V2 Vault flash-loan callback. Only the Vault, only during `arbitrage` with the Vault as
    /// source, only for the one token and amount asked for.
    function receiveFlashLoan(
        address[] calldata tokens,
        uint256[] calldata amounts,
        uint256[] calldata feeAmounts,
        bytes calldata userData
    ) external {
        if (msg.sender != address(balancerVault) || !inFlight || tCallback != CB_BALANCER_ARBITRAGE) {
            revert UnauthorizedCallback();
        }
        tCallback = CB_NONE;
        ArbParams calldata a = _arbParamsAt(userData);
        if (
            tokens.length != 1 || amounts.length != 1 || feeAmounts.length != 1 || tokens[0] != a.token
                || amounts[0] != a.amount
        ) revert UnauthorizedCallback();
        uint256 fee = feeAmounts[0];
        tPremium = fee;
        _sellCycle(a, fee);
        _transfer(a.token, msg.sender, a.amount + fee); // the Vault checks its balance after we return
    }

    /// The least the sale of `amount` collateral may return: its value at `pool`'s oracle in debt-asset
    /// units, minus maxSlippageBps. Both roundings go up (against the operator):
    /// value = ceil(amount * P(collateral) * 10^dec(debt) / (P(debt) * 10^dec(collateral))),
    /// floor = ceil(value * (10000 - maxSlippageBps) / 10000).
    function slippageFloor(address pool, address collateral, address debt, uint256 amount)
        public
        view
        returns (uint256)
    {
        address oracle = oracleOf[pool];
        if (oracle == address(0)) revert PoolNotAllowed(pool);
        uint256 priceCollateral = IAaveOracle(oracle).getAssetPrice(collateral);
        uint256 priceDebt = IAaveOracle(oracle).getAssetPrice(debt);
        if (priceCollateral == 0) revert BadOraclePrice(collateral);
        if (priceDebt == 0) revert BadOraclePrice(debt);
        uint256 value = _divUp(
            amount * priceCollateral * 10 ** IERC20Min(debt).decimals(),
            priceDebt * 10 ** IERC20Min(collateral).decimals()
        );
        return _divUp(value * (BPS - maxSlippageBps), BPS);
    }

    // ---------------------------------------------------------------------------------------------------

    /// Owner or operator, or this contract for a batch item while the batch runs; never reentered.
    function _checkCaller() private view {
        if (msg.sender != owner && !isOperator[msg.sender] && !(msg.sender == address(this) && inBatch)) {
            revert NotOperator();
        }
        if (inFlight) revert Reentered();
    }

    /// liquidationCall with the flash-borrowed debt, then the sale of everything seized (>= the floor).
    /// `data` is `p` as encoded: a Mixed path is decoded from it in place (calldata).
    function _liquidateAndSell(Params memory p, bytes calldata data) private {
        uint256 debtBefore = _balance(p.debt);
        uint256 collateralBefore = _balance(p.collateral);
        _approve(p.debt, p.lendingPool, p.debtToCover);
        ILiquidationPool(p.lendingPool).liquidationCall(p.collateral, p.debt, p.user, p.debtToCover, false);
        _approve(p.debt, p.lendingPool, 0);
        tRepaid = debtBefore - _balance(p.debt);
        uint256 seized = _balance(p.collateral) - collateralBefore;
        tSeized = seized;

        uint256 received = p.venue == Venue.Mixed
            ? _swapMixed(_paramsAt(data).path, p.collateral, seized, p.minOut)
            : _swap(p.venue, p.path, p.collateral, seized, p.minOut);
        uint256 floor = slippageFloor(p.lendingPool, p.collateral, p.debt, seized);
        if (received < floor) revert SlippageTooHigh(received, floor);
        tReceived = received;
    }

    /// A subsidized liquidation whose sale returned less than the debt repaid plus the premium: the owner
    /// pays the difference (at most tMaxSubsidy), so the loan is repaid and nothing else is touched.
    function _pullShortfall(address debt, uint256 premium) private {
        uint256 owed = tRepaid + premium;
        uint256 received = tReceived;
        if (received >= owed) return;
        uint256 shortfall = owed - received;
        uint256 cap = tMaxSubsidy;
        if (shortfall > cap) revert SubsidyTooHigh(shortfall, cap);
        tSubsidy = shortfall;
        _tokenCall(
            debt, abi.encodeWithSignature("transferFrom(address,address,uint256)", owner, address(this), shortfall)
        );
    }

    /// Sells the borrowed amount along the cycle; a loss (less back than amount + fee) reverts here.
    function _sellCycle(ArbParams calldata a, uint256 fee) private {
        uint256 received = _sell(a.venue, a.path, a.token, a.amount, a.minOut);
        if (received < a.amount + fee) revert InsufficientProfit(0, a.minProfit);
        tReceived = received;
    }

    /// G = the balance gain of `token` since `before`; S = G * bps / 10000 to the builder (in ETH, only
    /// after the check P = G - S >= minProfit); everything of `token` to the owner.
    function _settle(
        address token,
        uint256 before,
        uint16 coinbaseBps,
        bytes calldata coinbasePath,
        uint256 coinbaseMinOut,
        uint256 minProfit
    ) private returns (uint256 profit, uint256 coinbasePaid) {
        uint256 balanceAfter = _balance(token);
        uint256 gross = balanceAfter > before ? balanceAfter - before : 0;
        uint256 share = (gross * coinbaseBps) / BPS;
        profit = gross - share;
        if (profit < minProfit) revert InsufficientProfit(profit, minProfit);

        // The builder is paid only now, after the profit check, from the builder's share.
        if (share > 0) {
            uint256 wethAmount = token == weth ? share : _swapV3(coinbasePath, token, share, coinbaseMinOut);
            IWETH9(weth).withdraw(wethAmount);
            coinbasePaid = wethAmount;
            _sendEth(block.coinbase, wethAmount);
        }
        // Everything else to the owner: the profit (plus anything that was lying here).
        _sweepAll(token);
    }

    /// Entry points a batch may run.
    function _batchable(bytes4 selector) private pure returns (bool) {
        return selector == this.liquidate.selector || selector == this.arbitrage.selector
            || selector == this.liquidateSubsidized.selector;
    }

    function _setPool(address pool, address oracle) private {
        if (pool == address(0)) revert BadParams();
        oracleOf[pool] = oracle;
        emit PoolSet(pool, oracle);
    }

    function _divUp(uint256 a, uint256 b) private pure returns (uint256) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }

    // --- routes ----------------------------------------------------------------------------------------

    /// Sells `amountIn` of `tokenIn` along a checked route of any kind; returns the output.
    function _sell(Venue venue, bytes calldata path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256)
    {
        return venue == Venue.Mixed
            ? _swapMixed(path, tokenIn, amountIn, minOut)
            : _swap(venue, path, tokenIn, amountIn, minOut);
    }

    /// One single-venue path (UniswapV3, UniswapV2, BalancerV2).
    function _swap(Venue venue, bytes memory path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256)
    {
        if (venue == Venue.UniswapV3) return _swapV3(path, tokenIn, amountIn, minOut);
        if (venue == Venue.UniswapV2) return _swapV2(path, tokenIn, amountIn, minOut);
        if (venue == Venue.BalancerV2) return _swapBalancer(path, tokenIn, amountIn, minOut);
        revert BadPath();
    }

    /// Splits `amountIn` over the legs by bps (floor; the last leg takes the remainder), runs each leg's
    /// hops in order (minOut 0 each), and checks the summed output against `minOut`.
    function _swapMixed(bytes calldata path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256 out)
    {
        Leg[] memory legs = abi.decode(path, (Leg[]));
        uint256 n = legs.length;
        uint256 left = amountIn;
        for (uint256 i = 0; i < n; ++i) {
            uint256 amount = i + 1 == n ? left : (amountIn * legs[i].bps) / BPS;
            left -= amount;
            out += _runLeg(legs[i].hops, tokenIn, amount);
        }
        if (out < minOut) revert InsufficientOutput(out, minOut);
    }

    /// One leg of a Mixed route: its hops in order, each selling the previous one's whole output.
    function _runLeg(Hop[] memory hops, address token, uint256 amount) private returns (uint256) {
        for (uint256 j = 0; j < hops.length; ++j) {
            bytes memory hopPath = hops[j].path;
            amount = _swap(hops[j].venue, hopPath, token, amount, 0);
            token = _addressAt(hopPath, hopPath.length - 20);
        }
        return amount;
    }

    function _swapV3(bytes memory path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256 out)
    {
        _approve(tokenIn, address(routerV3), amountIn);
        out = routerV3.exactInput(
            IUniswapV3Router.ExactInputParams({
                path: path,
                recipient: address(this),
                deadline: block.timestamp,
                amountIn: amountIn,
                amountOutMinimum: minOut
            })
        );
        _approve(tokenIn, address(routerV3), 0);
    }

    function _swapV2(bytes memory path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256 out)
    {
        uint256 n = path.length / 20;
        address[] memory tokens = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            tokens[i] = _addressAt(path, i * 20);
        }
        _approve(tokenIn, address(routerV2), amountIn);
        uint256[] memory amounts =
            routerV2.swapExactTokensForTokens(amountIn, minOut, tokens, address(this), block.timestamp);
        _approve(tokenIn, address(routerV2), 0);
        out = amounts[n - 1];
    }

    /// Balancer V2: `swap` GIVEN_IN for one hop (limit = minOut), `batchSwap` GIVEN_IN for several (step
    /// i swaps token i for token i + 1 in pool i; amount 0 after the first step = the previous output;
    /// limits: at most amountIn in, at least minOut out).
    function _swapBalancer(bytes memory path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256 out)
    {
        uint256 hops = (path.length - 20) / 52;
        IBalancerVault.FundManagement memory funds = IBalancerVault.FundManagement({
            sender: address(this),
            fromInternalBalance: false,
            recipient: payable(address(this)),
            toInternalBalance: false
        });
        _approve(tokenIn, address(balancerVault), amountIn);
        if (hops == 1) {
            out = balancerVault.swap(
                IBalancerVault.SingleSwap({
                    poolId: _bytes32At(path, 20),
                    kind: IBalancerVault.SwapKind.GIVEN_IN,
                    assetIn: tokenIn,
                    assetOut: _addressAt(path, 52),
                    amount: amountIn,
                    userData: ""
                }),
                funds,
                minOut,
                block.timestamp
            );
        } else {
            out = _batchSwapBalancer(path, hops, tokenIn, amountIn, minOut, funds);
        }
        _approve(tokenIn, address(balancerVault), 0);
    }

    function _batchSwapBalancer(
        bytes memory path,
        uint256 hops,
        address tokenIn,
        uint256 amountIn,
        uint256 minOut,
        IBalancerVault.FundManagement memory funds
    ) private returns (uint256) {
        IBalancerVault.BatchSwapStep[] memory steps = new IBalancerVault.BatchSwapStep[](hops);
        address[] memory assets = new address[](hops + 1);
        int256[] memory limits = new int256[](hops + 1);
        assets[0] = tokenIn;
        for (uint256 i = 0; i < hops; ++i) {
            steps[i] = IBalancerVault.BatchSwapStep({
                poolId: _bytes32At(path, 20 + 52 * i),
                assetInIndex: i,
                assetOutIndex: i + 1,
                amount: i == 0 ? amountIn : 0,
                userData: ""
            });
            assets[i + 1] = _addressAt(path, 52 * (i + 1));
        }
        limits[0] = int256(amountIn);
        limits[hops] = -int256(minOut);
        int256[] memory deltas =
            balancerVault.batchSwap(IBalancerVault.SwapKind.GIVEN_IN, steps, assets, funds, limits, block.timestamp);
        return uint256(-deltas[hops]);
    }

    /// Checks a route of any kind runs tokenIn -> tokenOut and is well formed (a Mixed route: legs with
    /// bps > 0 summing to 10000, each a chain of at least one V3 / V2 / Balancer hop). Returns whether it
    /// swaps on the Balancer Vault.
    function _checkRoute(Venue venue, bytes calldata path, address tokenIn, address tokenOut)
        private
        view
        returns (bool viaBalancer)
    {
        if (venue != Venue.Mixed) {
            if (_pathEnd(venue, path, tokenIn) != tokenOut) revert BadPath();
            return venue == Venue.BalancerV2;
        }
        Leg[] memory legs = abi.decode(path, (Leg[]));
        uint256 total;
        for (uint256 i = 0; i < legs.length; ++i) {
            Hop[] memory hops = legs[i].hops;
            if (legs[i].bps == 0 || hops.length == 0) revert BadPath();
            total += legs[i].bps;
            address token = tokenIn;
            for (uint256 j = 0; j < hops.length; ++j) {
                token = _pathEnd(hops[j].venue, hops[j].path, token);
                if (hops[j].venue == Venue.BalancerV2) viaBalancer = true;
            }
            if (token != tokenOut) revert BadPath();
        }
        if (total != BPS) revert BadPath();
    }

    /// Checks a single-venue path starts at tokenIn and is well formed; returns its last token. A V3 path
    /// is 20 + 23k bytes (k >= 1 hops), a V2 path 20k bytes (k >= 2 tokens), a Balancer path 20 + 52k
    /// bytes (k >= 1 hops; refused when this contract has no Vault).
    function _pathEnd(Venue venue, bytes memory path, address tokenIn) private view returns (address) {
        uint256 len = path.length;
        bool ok;
        if (venue == Venue.UniswapV3) ok = len >= 43 && (len - 20) % 23 == 0;
        else if (venue == Venue.UniswapV2) ok = len >= 40 && len % 20 == 0;
        else if (venue == Venue.BalancerV2) ok = len >= 72 && (len - 20) % 52 == 0 && address(balancerVault) != address(0);
        if (!ok || _addressAt(path, 0) != tokenIn) revert BadPath();
        return _addressAt(path, len - 20);
    }

    /// The Params / ArbParams our own `abi.encode(p)` put in a flash loan's data, read in place (the
    /// encoding of one dynamic struct: a head word with its offset, then the struct).
    function _paramsAt(bytes calldata data) private pure returns (Params calldata p) {
        assembly ("memory-safe") {
            p := add(data.offset, calldataload(data.offset))
        }
    }

    function _arbParamsAt(bytes calldata data) private pure returns (ArbParams calldata a) {
        assembly ("memory-safe") {
            a := add(data.offset, calldataload(data.offset))
        }
    }

    function _addressAt(bytes memory b, uint256 offset) private pure returns (address a) {
        assembly ("memory-safe") {
            a := shr(96, mload(add(add(b, 32), offset)))
        }
    }

    function _bytes32At(bytes memory b, uint256 offset) private pure returns (bytes32 w) {
        assembly ("memory-safe") {
            w := mload(add(add(b, 32), offset))
        }
    }

    function _balance(address token) private view returns (uint256) {
        return IERC20Min(token).balanceOf(address(this));
    }

    function _sweepAll(address token) private {
        uint256 amount = _balance(token);
        if (amount > 0) _transfer(token, owner, amount);
    }

    function _transfer(address token, address to, uint256 amount) private {
        _tokenCall(token, abi.encodeWithSignature("transfer(address,uint256)", to, amount));
    }

    function _approve(address token, address spender, uint256 amount) private {
        _tokenCall(token, abi.encodeWithSignature("approve(address,uint256)", spender, amount));
    }

    /// ERC-20 call that accepts tokens returning nothing (USDT) and rejects `false` and non-contracts.
    function _tokenCall(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length == 0 ? token.code.length == 0 : !abi.decode(ret, (bool)))) {
            revert TokenCallFailed(token);
        }
    }

    function _sendEth(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EthTransferFailed(to);
    }
}
